//! Rules about revisions that every backend applies in the same way, so that they cannot
//! drift apart: which revisions can be read and watched from.

use crate::{Result, Revision, StoreError};

/// Whether a read at `requested` can be served: not newer than `current`, and not at or
/// before the compaction point (revision 0, the empty store, stays readable until something
/// is compacted).
pub(crate) fn check_readable(
    requested: Revision,
    current: Revision,
    compacted: Revision,
) -> Result<()> {
    if requested > current {
        return Err(StoreError::FutureRevision { requested, current });
    }
    if requested < 0 || (compacted > 0 && requested <= compacted) {
        return Err(StoreError::Compacted {
            requested,
            compacted,
        });
    }
    Ok(())
}

/// Whether every change after `after` is still retained. Changes after the compaction
/// point are all kept, so watching from exactly that point is fine. Watching from a future
/// revision is allowed: the watch waits for it.
pub(crate) fn check_watchable(after: Revision, compacted: Revision) -> Result<()> {
    if after < compacted || after < 0 {
        return Err(StoreError::Compacted {
            requested: after,
            compacted,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readable_revisions() {
        assert!(check_readable(0, 0, 0).is_ok());
        assert!(check_readable(3, 5, 0).is_ok());
        assert!(check_readable(5, 5, 0).is_ok());
        assert!(matches!(
            check_readable(6, 5, 0),
            Err(StoreError::FutureRevision { .. })
        ));
        assert!(matches!(
            check_readable(3, 5, 3),
            Err(StoreError::Compacted { .. })
        ));
        assert!(matches!(
            check_readable(-1, 5, 0),
            Err(StoreError::Compacted { .. })
        ));
        assert!(check_readable(4, 5, 3).is_ok());
    }

    #[test]
    fn watchable_revisions() {
        assert!(check_watchable(0, 0).is_ok());
        assert!(check_watchable(3, 3).is_ok());
        assert!(check_watchable(9, 3).is_ok());
        assert!(matches!(
            check_watchable(2, 3),
            Err(StoreError::Compacted { .. })
        ));
        assert!(matches!(
            check_watchable(-1, 0),
            Err(StoreError::Compacted { .. })
        ));
    }
}
