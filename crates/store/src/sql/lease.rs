//! The arithmetic of a lease grant (see `crate::replicas`), shared by both backends: each reads `room` and the
//! replica's recorded spend in its own transaction, and this decides what is granted.

use spendgate_core::Money;

use crate::replicas::{LeaseGrant, LeaseRequest};
use crate::{Result, StoreError};

/// A money amount as a lease column (picodollars in a 64-bit integer).
pub fn pico(m: Money) -> Result<i64> {
    i64::try_from(m.picos())
        .map_err(|_| StoreError::Invalid(format!("{} does not fit a lease", m.to_usd_string())))
}

pub fn money(p: i64) -> Money {
    Money::from_picos(i128::from(p))
}

/// What a grant comes to, in picodollars.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    pub granted: i64,
    pub added: i64,
    pub unleased: i64,
}

impl Grant {
    /// The store's answer once the grant is written as lease `id`, valid until `expires_at_ms`.
    pub fn answer(self, id: i64, expires_at_ms: i64) -> LeaseGrant {
        LeaseGrant {
            id,
            granted: money(self.granted),
            added: money(self.added),
            unleased: money(self.unleased),
            expires_at_ms,
        }
    }
}

/// `room` is the target's amount (or a wallet's balance) less the period's spend and the other live leases'
/// unwritten parts; `my_recorded` what this replica's lease has written already.
pub fn grant(req: &LeaseRequest, my_recorded: i64, room: i64) -> Result<Grant> {
    // What the replica keeps is never less than what it has already written against the lease, and its own
    // unwritten spend is part of what it keeps.
    let keep = pico(req.keep)?.max(my_recorded);
    let available = room - (keep - my_recorded);
    let added = pico(req.want)?.clamp(0, available.max(0));
    Ok(Grant {
        granted: keep + added,
        added,
        unleased: (available - added).max(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replicas::LeaseTarget;

    fn req(keep: i128, want: i128) -> LeaseRequest {
        LeaseRequest {
            target: LeaseTarget::Wallet { id: 1 },
            gateway: "g".into(),
            keep: Money::from_picos(keep),
            want: Money::from_picos(want),
            ttl_ms: 1,
        }
    }

    #[test]
    fn a_grant_never_exceeds_the_room_and_keeps_what_was_written() {
        assert_eq!(
            grant(&req(0, 600), 0, 1_000).unwrap(),
            Grant {
                granted: 600,
                added: 600,
                unleased: 400
            }
        );
        // 300 kept of which 100 written: 200 of it is still unwritten and takes room.
        assert_eq!(
            grant(&req(300, 900), 100, 1_000).unwrap(),
            Grant {
                granted: 1_100,
                added: 800,
                unleased: 0
            }
        );
        // Keeping less than was written keeps what was written.
        assert_eq!(grant(&req(0, 0), 250, 0).unwrap().granted, 250);
        // No room: nothing added.
        assert_eq!(grant(&req(0, 50), 0, -10).unwrap().added, 0);
    }
}
