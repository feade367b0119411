//! Queue ingress (in progress).

use crate::config::RedisQueueSettings;
use crate::state::AppState;

pub async fn run(
    _state: AppState,
    _settings: RedisQueueSettings,
    shutdown: impl std::future::Future<Output = ()>,
) {
    shutdown.await
}
