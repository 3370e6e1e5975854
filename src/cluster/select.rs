//! Smooth weighted round robin: a precomputed schedule walked from a shared cursor.

/// The smooth weighted round robin sequence (as nginx computes it) of `(item, weight)` pairs:
/// weights 5,1,1 give a a b a c a a rather than a a a a a b c. Weights are first divided by
/// their greatest common divisor so the schedule stays short; items of weight 0 never appear.
pub(crate) fn smooth_schedule(weighted: &[(usize, usize)]) -> Vec<usize> {
    let weighted: Vec<(usize, usize)> = weighted.iter().copied().filter(|&(_, w)| w > 0).collect();
    let divisor = weighted.iter().fold(0, |g, &(_, w)| gcd(g, w)).max(1);
    let weights: Vec<i64> = weighted
        .iter()
        .map(|&(_, w)| (w / divisor) as i64)
        .collect();
    let total: i64 = weights.iter().sum();
    let mut current = vec![0i64; weights.len()];
    let mut schedule = Vec::with_capacity(total as usize);
    for _ in 0..total {
        for (c, w) in current.iter_mut().zip(&weights) {
            *c += w;
        }
        let best = (0..current.len())
            .max_by_key(|&i| (current[i], std::cmp::Reverse(i)))
            .unwrap_or(0);
        current[best] -= total;
        schedule.push(weighted[best].0);
    }
    schedule
}

/// The first item of `schedule`, walked from `start` round the end, that is `eligible`.
pub(crate) fn first_eligible(
    schedule: &[usize],
    start: usize,
    mut eligible: impl FnMut(usize) -> bool,
) -> Option<usize> {
    let len = schedule.len();
    (0..len)
        .map(|i| schedule[(start.wrapping_add(i)) % len])
        .find(|&item| eligible(item))
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_follows_weights_and_interleaves() {
        assert_eq!(
            smooth_schedule(&[(0, 5), (1, 1), (2, 1)]),
            vec![0, 0, 1, 0, 2, 0, 0]
        );
    }

    #[test]
    fn schedule_reduces_weights_and_leaves_out_zero() {
        let s = smooth_schedule(&[(0, 70), (1, 30), (2, 0)]);
        assert_eq!(s.len(), 10);
        assert_eq!(s.iter().filter(|&&i| i == 0).count(), 7);
        assert_eq!(s.iter().filter(|&&i| i == 1).count(), 3);
        assert!(!s.contains(&2));
        assert!(smooth_schedule(&[(0, 0)]).is_empty());
        assert!(smooth_schedule(&[]).is_empty());
    }

    #[test]
    fn the_first_eligible_item_is_taken_from_the_cursor_on() {
        let s = [0, 1, 2];
        assert_eq!(first_eligible(&s, 1, |_| true), Some(1));
        assert_eq!(first_eligible(&s, 4, |i| i != 1), Some(2));
        assert_eq!(first_eligible(&s, 0, |_| false), None);
        assert_eq!(first_eligible(&[], 0, |_| true), None);
        assert_eq!(first_eligible(&s, usize::MAX, |_| true), Some(0));
    }
}
