//! `current_time`: the current UTC time, optionally in a fixed UTC offset.

use async_trait::async_trait;
use serde_json::{json, Value};

use super::ServerTool;

/// Tells the model the current time.
pub struct CurrentTime;

#[async_trait]
impl ServerTool for CurrentTime {
    fn name(&self) -> &str {
        "current_time"
    }

    fn description(&self) -> &str {
        "Returns the current date and time in RFC 3339 form, in UTC or at a given UTC offset in minutes."
    }

    fn parameters(&self) -> Value {
        json!({
            "type": "object",
            "properties": {
                "utc_offset_minutes": {
                    "type": "integer",
                    "description": "Offset from UTC in minutes, e.g. 60 for UTC+01:00. Defaults to 0."
                }
            }
        })
    }

    async fn call(&self, arguments: Value) -> Result<String, String> {
        let offset = match arguments.get("utc_offset_minutes") {
            None | Some(Value::Null) => 0,
            Some(value) => value
                .as_i64()
                .filter(|minutes| minutes.abs() < 24 * 60)
                .ok_or("utc_offset_minutes must be an integer between -1439 and 1439")?,
        };
        let zone = chrono::FixedOffset::east_opt(i32::try_from(offset * 60).unwrap_or(0))
            .ok_or("utc_offset_minutes is out of range")?;
        Ok(chrono::Utc::now().with_timezone(&zone).to_rfc3339())
    }
}
