//! A pool of values lent one borrower at a time (the encoder's ONNX Runtime sessions).

use std::ops::{Deref, DerefMut};
use std::sync::{Condvar, Mutex, PoisonError};

/// Values lent out one at a time each; a borrower waits while all are out.
pub(crate) struct Pool<T> {
    free: Mutex<Vec<T>>,
    returned: Condvar,
    size: usize,
}

/// A value out of the pool; back in it when dropped (a borrower that panicked included).
pub(crate) struct Lent<'a, T> {
    pool: &'a Pool<T>,
    value: Option<T>,
}

/// The pool's lock was poisoned (a thread panicked while it held the list itself).
#[derive(Debug)]
pub(crate) struct Poisoned;

impl<T> Pool<T> {
    pub(crate) fn new(values: Vec<T>) -> Self {
        Self {
            size: values.len(),
            free: Mutex::new(values),
            returned: Condvar::new(),
        }
    }

    /// How many values the pool holds, lent or not.
    pub(crate) fn size(&self) -> usize {
        self.size
    }

    /// A free value, waiting for one when all are lent.
    pub(crate) fn lend(&self) -> Result<Lent<'_, T>, Poisoned> {
        let mut free = self.free.lock().map_err(|_| Poisoned)?;
        loop {
            if let Some(value) = free.pop() {
                return Ok(Lent {
                    pool: self,
                    value: Some(value),
                });
            }
            free = self.returned.wait(free).map_err(|_| Poisoned)?;
        }
    }
}

impl<T> Deref for Lent<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // Taken only in `drop`.
        match &self.value {
            Some(v) => v,
            None => unreachable!("a lent value is present until dropped"),
        }
    }
}

impl<T> DerefMut for Lent<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        match &mut self.value {
            Some(v) => v,
            None => unreachable!("a lent value is present until dropped"),
        }
    }
}

impl<T> Drop for Lent<'_, T> {
    fn drop(&mut self) {
        if let Some(value) = self.value.take() {
            let mut free = self
                .pool
                .free
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            free.push(value);
            self.pool.returned.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    #[test]
    fn two_values_are_lent_at_once_and_a_third_borrower_waits_for_one() {
        let pool = Pool::new(vec![1u32, 2]);
        let a = pool.lend().unwrap();
        let b = pool.lend().unwrap();
        assert_ne!(*a, *b, "each borrower has its own value");
        std::thread::scope(|s| {
            let (tx, rx) = mpsc::channel();
            let pool = &pool;
            s.spawn(move || {
                let c = pool.lend().unwrap();
                tx.send(*c).unwrap();
            });
            // Both values are out: the third borrower is still waiting.
            assert!(rx.recv_timeout(Duration::from_millis(100)).is_err());
            let returned = *a;
            drop(a);
            assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), returned);
        });
        drop(b);
        assert_eq!(pool.free.lock().unwrap().len(), 2, "every value came back");
    }

    #[test]
    fn a_borrower_that_panics_gives_its_value_back() {
        let pool = Pool::new(vec![7u32]);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _v = pool.lend().unwrap();
            panic!("the pass failed");
        }));
        assert!(r.is_err());
        assert_eq!(*pool.lend().unwrap(), 7);
    }
}
