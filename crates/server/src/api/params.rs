//! The closed sets query parameters take, as enums, so that the OpenAPI document lists their
//! values and a wrong value is a 400 naming them.

use hilo_core::exec::ExecStatus;
use serde::Deserialize;
use utoipa::ToSchema;

/// An execution status.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StatusParam {
    Pending,
    Running,
    Waiting,
    Succeeded,
    Failed,
    Compensated,
    HandedOver,
    Cancelled,
}

impl From<StatusParam> for ExecStatus {
    fn from(s: StatusParam) -> ExecStatus {
        match s {
            StatusParam::Pending => ExecStatus::Pending,
            StatusParam::Running => ExecStatus::Running,
            StatusParam::Waiting => ExecStatus::Waiting,
            StatusParam::Succeeded => ExecStatus::Succeeded,
            StatusParam::Failed => ExecStatus::Failed,
            StatusParam::Compensated => ExecStatus::Compensated,
            StatusParam::HandedOver => ExecStatus::HandedOver,
            StatusParam::Cancelled => ExecStatus::Cancelled,
        }
    }
}

/// What started an execution (its `started_by` kind).
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StartedByParam {
    Cli,
    Api,
    Queue,
    Conversation,
    Child,
    Schedule,
    Webhook,
    Mcp,
    A2a,
    Fork,
    Eval,
    Retry,
}

impl StartedByParam {
    /// The kind's tag, as `StartedBy::kind` writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            StartedByParam::Cli => "cli",
            StartedByParam::Api => "api",
            StartedByParam::Queue => "queue",
            StartedByParam::Conversation => "conversation",
            StartedByParam::Child => "child",
            StartedByParam::Schedule => "schedule",
            StartedByParam::Webhook => "webhook",
            StartedByParam::Mcp => "mcp",
            StartedByParam::A2a => "a2a",
            StartedByParam::Fork => "fork",
            StartedByParam::Eval => "eval",
            StartedByParam::Retry => "retry",
        }
    }
}

/// Which version becomes active on import.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActivateParam {
    IfNewest,
    Always,
    Never,
}

/// A graph's notation.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum GraphFormatParam {
    Mermaid,
    Dot,
}

/// A human task's status filter.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatusParam {
    Pending,
    Answered,
    Closed,
    All,
}

impl TaskStatusParam {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatusParam::Pending => "pending",
            TaskStatusParam::Answered => "answered",
            TaskStatusParam::Closed => "closed",
            TaskStatusParam::All => "all",
        }
    }
}

/// A cost summary's bucket size.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PeriodParam {
    Hour,
    Day,
    Month,
}

/// What a cost summary groups by.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ByParam {
    Model,
    Workflow,
    Node,
}

/// A list's `limit`: `default` when absent; 400 outside 1 to `max`.
pub(crate) fn limit(limit: Option<u32>, default: u32, max: u32) -> crate::error::ApiResult<u32> {
    let limit = limit.unwrap_or(default);
    if (1..=max).contains(&limit) {
        Ok(limit)
    } else {
        Err(crate::error::ApiError::bad_request(
            "INVALID_QUERY",
            format!("limit={limit} is out of range: give 1 to {max}"),
        ))
    }
}

/// An optional whole number that JSON may write as `226` or `226.0` (JSON Schema's
/// `integer` admits both; serde's integers only the first).
pub(crate) fn whole<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<u64>,
{
    let n: Option<serde_json::Number> = Option::deserialize(d)?;
    let Some(n) = n else { return Ok(None) };
    let v = n.as_u64().or_else(|| {
        n.as_f64()
            .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= u64::MAX as f64)
            .map(|f| f as u64)
    });
    v.and_then(|v| T::try_from(v).ok())
        .map(Some)
        .ok_or_else(|| serde::de::Error::custom(format!("{n} is not a whole number in range")))
}

/// `?limit=&cursor=` of a list read whole and paged by a unique key.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Page size, 1 to 500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// The page of `items` after `cursor`, in the byte order of their unique `key` (the same on
/// every backend: PostgreSQL's ORDER BY follows its collation), with the cursor of the next
/// page when there is one. A cursor is the last key of its page, so a page is never skipped or
/// repeated when items before it are added or removed.
pub(crate) fn keyset_page<T>(
    mut items: Vec<T>,
    key: impl Fn(&T) -> &str,
    q: &PageQuery,
) -> crate::error::ApiResult<(Vec<T>, Option<String>)> {
    let limit = limit(q.limit, 100, 500)? as usize;
    let after = q.cursor.as_deref().map(decode_cursor).transpose()?;
    items.sort_by(|a, b| key(a).as_bytes().cmp(key(b).as_bytes()));
    if let Some(after) = &after {
        items.retain(|x| key(x).as_bytes() > after.as_bytes());
    }
    let more = items.len() > limit;
    items.truncate(limit);
    let next = if more {
        items.last().map(|x| encode_cursor(key(x)))
    } else {
        None
    };
    Ok((items, next))
}

/// An opaque cursor for `text` (the key of a page's last item).
pub(crate) fn encode_cursor(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}

/// The key a cursor of [`encode_cursor`] carries, if it is one.
pub(crate) fn cursor_text(cursor: &str) -> Option<String> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
}

/// The key a cursor of [`encode_cursor`] carries; 400 `INVALID_QUERY` for any other text.
pub(crate) fn decode_cursor(cursor: &str) -> crate::error::ApiResult<String> {
    cursor_text(cursor).ok_or_else(|| {
        crate::error::ApiError::bad_request(
            "INVALID_QUERY",
            "cursor is not one this server gave out: pass next_cursor of the previous page",
        )
    })
}

/// The cursor of an item listed by `(created_at, id)`.
pub(crate) fn encode_time_cursor(at: i64, id: &str) -> String {
    encode_cursor(&format!("{at}:{id}"))
}

/// `(created_at, id)` from a cursor of [`encode_time_cursor`]; 400 `INVALID_QUERY` otherwise.
pub(crate) fn decode_time_cursor(cursor: &str) -> crate::error::ApiResult<(i64, String)> {
    let text = decode_cursor(cursor)?;
    text.split_once(':')
        .and_then(|(at, id)| Some((at.parse::<i64>().ok()?, id.to_string())))
        .ok_or_else(|| {
            crate::error::ApiError::bad_request(
                "INVALID_QUERY",
                "cursor is not one this server gave out: pass next_cursor of the previous page",
            )
        })
}

/// Cuts a page read with one item more than `limit` to `limit`; the cursor of its last item
/// (by `cursor`) when there is a next page.
pub(crate) fn cut_page<T>(
    items: &mut Vec<T>,
    limit: u32,
    cursor: impl Fn(&T) -> String,
) -> Option<String> {
    let more = items.len() > limit as usize;
    items.truncate(limit as usize);
    if more { items.last().map(cursor) } else { None }
}
