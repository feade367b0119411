//! A tiny bounded pool: at most `n` futures in flight on the current task.

use futures_util::stream::{FuturesUnordered, StreamExt};
use std::future::Future;
use std::pin::Pin;

type F = Pin<Box<dyn Future<Output = anyhow::Result<()>>>>;

pub struct Pool {
    n: usize,
    set: FuturesUnordered<F>,
}

impl Pool {
    pub fn new(n: usize) -> Pool {
        Pool {
            n,
            set: FuturesUnordered::new(),
        }
    }

    pub async fn push(
        &mut self,
        f: impl Future<Output = anyhow::Result<()>> + 'static,
    ) -> anyhow::Result<()> {
        while self.set.len() >= self.n {
            if let Some(r) = self.set.next().await {
                r?;
            }
        }
        self.set.push(Box::pin(f));
        Ok(())
    }

    pub async fn finish(mut self) -> anyhow::Result<()> {
        while let Some(r) = self.set.next().await {
            r?;
        }
        Ok(())
    }
}
