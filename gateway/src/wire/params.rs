//! The `MAIL FROM` parameters Postern understands: parsed from the client's command
//! (`smtp::command`) and passed on in the next hop's (`relay`).

/// `MAIL FROM` parameters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MailParams {
    /// `SIZE=n`.
    pub size: Option<u64>,
    /// `BODY=8BITMIME` (true) or `BODY=7BIT` (false); absent: not given.
    pub body_8bit: Option<bool>,
    /// `SMTPUTF8`.
    pub smtputf8: bool,
}
