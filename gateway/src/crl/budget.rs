//! How many bytes of CRL files are loaded at once. Loading a file holds the file itself,
//! the index being built and its sort scratch, on top of every index in force; dozens of
//! sources starting together (a DoD-sized estate: 49 CRLs, 240 MB of DER) would otherwise
//! download and parse all at once, and the peak would be the sum of every file. So each
//! load (body download, parse, verify, index, disk-cache write) first takes a share of
//! one budget, as large as its file: small files load side by side, a file as large as
//! the budget or larger loads alone, and the memory above the indexes in force stays near
//! the largest single file (or the budget, when every file is smaller), whatever the
//! number of sources. A file of unannounced size (no `Content-Length`) takes the whole
//! budget. Conditional requests answered `304 Not Modified` take nothing: checking for a
//! new CRL is never held up, only loading one. Loads are CPU-bound and short (a 50 MB CRL
//! takes about a second), so the wait this adds is short too.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The default budget: 32 MiB of files loading at once.
pub const DEFAULT_LOAD_BUDGET: u64 = 32 * 1024 * 1024;

/// Shares are counted in units of this many bytes (a semaphore counts in `u32`).
const UNIT: u64 = 64 * 1024;

/// The budget shared by every source of a gateway.
#[derive(Clone, Debug)]
pub(crate) struct LoadBudget {
    permits: Arc<Semaphore>,
    units: u32,
}

/// A share of the budget, given back when dropped.
#[derive(Debug)]
pub(crate) struct Share(
    // Held only to be released on drop.
    #[allow(dead_code)] Option<OwnedSemaphorePermit>,
);

impl LoadBudget {
    /// A budget of `bytes` (at least one unit).
    pub(crate) fn new(bytes: u64) -> Self {
        let units = u32::try_from((bytes / UNIT).max(1)).unwrap_or(u32::MAX >> 4);
        Self {
            permits: Arc::new(Semaphore::new(units as usize)),
            units,
        }
    }

    fn units_for(&self, size: Option<u64>) -> u32 {
        size.map_or(self.units, |s| {
            u32::try_from(s.div_ceil(UNIT).clamp(1, u64::from(self.units))).unwrap_or(self.units)
        })
    }

    /// Wait for a share for a file of `size` bytes (`None`: unknown, the whole budget).
    pub(crate) async fn take(&self, size: Option<u64>) -> Share {
        let units = self.units_for(size);
        // The semaphore is never closed, so acquiring only ever waits.
        Share(
            Arc::clone(&self.permits)
                .acquire_many_owned(units)
                .await
                .ok(),
        )
    }

    /// [`LoadBudget::take`] for threads outside the async executor (disk-cache restores).
    pub(crate) fn take_blocking(&self, size: Option<u64>) -> Share {
        futures::executor::block_on(self.take(size))
    }

    /// Units free now (tests).
    #[cfg(test)]
    fn available(&self) -> usize {
        self.permits.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn small_files_share_the_budget_large_ones_take_it_all() {
        let b = LoadBudget::new(10 * UNIT);
        let a = b.take(Some(3 * UNIT)).await;
        let c = b.take(Some(1)).await;
        assert_eq!(b.available(), 6);
        // Larger than the budget: waits for everything, then takes all of it.
        let big = {
            let b2 = b.clone();
            tokio::spawn(async move { b2.take(Some(100 * UNIT)).await })
        };
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!big.is_finished());
        drop((a, c));
        let big = big.await.unwrap();
        assert_eq!(b.available(), 0);
        drop(big);
        let unknown = b.take_blocking(None);
        assert_eq!(b.available(), 0);
        drop(unknown);
        assert_eq!(b.available(), 10);
    }
}
