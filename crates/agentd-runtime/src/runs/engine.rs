//! The run loop: instructions + session history + the run's messages → model → tool calls → model …
//! until an answer, a pause (client-side tools, confirmations), a cancel, an error or a limit.
//!
//! One [`Execution`] drives one segment of a run (from start or continue to the end or a pause) on a
//! task of its own. It is the run's only writer while it lives: it numbers the events, publishes them
//! to the hub at once, and stores them with the run row in batches at durable points (before each model
//! call after the first, at least once a second while streaming, and at the end).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agentd_core::run::{
    ChatMessage, Run, RunEvent, RunEventData, RunStatus, ToolCall, ToolExecution, ToolMetrics,
};
use agentd_models::{
    FinishReason, ModelError, ModelEvent, ModelProvider, ModelRequest, ToolDefinition,
};
use agentd_store::{Store, Update};
use futures::StreamExt;
use serde_json::Value;

use super::hub::{LiveRun, RunHub};
use crate::tools::ServerTool;

/// How a tool named by the model is executed.
#[derive(Clone)]
pub(crate) enum ToolKind {
    /// In the server; `confirm` pauses the run for a confirmation first.
    Server {
        tool: Arc<dyn ServerTool>,
        confirm: bool,
    },
    /// By the client: the run pauses for the result.
    Client,
}

/// Everything one execution needs besides the run itself.
#[derive(Clone)]
pub(crate) struct Plan {
    pub(crate) provider: Arc<dyn ModelProvider>,
    /// The model name as the provider knows it.
    pub(crate) model: String,
    /// The instructions.
    pub(crate) preamble: Vec<ChatMessage>,
    /// Whether the session's earlier runs come between the instructions and this run (read when the
    /// run gets its session's turn, so a queued run sees the run it waited for).
    pub(crate) with_history: bool,
    pub(crate) definitions: Vec<ToolDefinition>,
    pub(crate) tools: HashMap<String, ToolKind>,
    /// The run's user's memories: what the run does with them, if it has a user and the agent uses
    /// memories.
    pub(crate) memory: Option<super::memory::MemoryPlan>,
    /// The knowledge base, for agents that use it; it also collects the run's references.
    pub(crate) knowledge: Option<super::knowledge::KnowledgePlan>,
}

/// Where an execution starts.
pub(crate) enum Start {
    /// A new run.
    Fresh,
    /// A paused run whose pending tools the client has resolved (`RunContinued` is stored already).
    Continue(Vec<ToolExecution>),
    /// The run was cancelled while it waited for its session's turn.
    CancelledWhileQueued,
}

/// How an execution ended.
enum Ending {
    Completed,
    Paused(Vec<ToolExecution>),
    Cancelled,
    Failed { message: String, error_type: String },
}

const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// Waits between the attempts to store a segment's last events.
const FINAL_FLUSH_RETRIES: [Duration; 3] = [
    Duration::from_millis(100),
    Duration::from_millis(500),
    Duration::from_secs(2),
];

/// How many earlier runs of a session a new run sees as history.
const HISTORY_RUNS: u32 = 20;

/// One segment of one run.
pub(crate) struct Execution {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) hub: Arc<RunHub>,
    pub(crate) live: Arc<LiveRun>,
    pub(crate) run: Run,
    pub(crate) plan: Plan,
    /// The run's `last_seq` as stored.
    stored_seq: u64,
    unflushed: Vec<RunEvent>,
    last_flush: Instant,
    started: Instant,
    /// The answer text of the model call in progress (or the last one).
    content: String,
    /// When the run's time limit (`max_seconds`) is up; far away without one.
    deadline: tokio::time::Instant,
}

impl Execution {
    pub(crate) fn new(
        store: Arc<dyn Store>,
        hub: Arc<RunHub>,
        live: Arc<LiveRun>,
        run: Run,
        plan: Plan,
    ) -> Self {
        let stored_seq = run.last_seq;
        Self {
            store,
            hub,
            live,
            run,
            plan,
            stored_seq,
            unflushed: Vec::new(),
            last_flush: Instant::now(),
            started: Instant::now(),
            content: String::new(),
            deadline: tokio::time::Instant::now() + Duration::from_secs(365 * 24 * 3600),
        }
    }

    /// Runs the segment to its end and stores it. Never fails: every problem becomes a `RunError`.
    #[tracing::instrument(skip_all, fields(run.id = %self.run.id))]
    pub(crate) async fn execute(mut self, start: Start) {
        let ending = self.drive(start).await;
        if matches!(ending, Ending::Completed) {
            self.update_memories().await;
        }
        let elapsed = self.started.elapsed().as_secs_f64();
        self.run.metrics.duration += elapsed;
        let metrics = self.run.metrics;
        let (status, data) = match ending {
            Ending::Completed => {
                self.run.content = Some(self.content.clone());
                (
                    RunStatus::Completed,
                    RunEventData::RunCompleted {
                        content: self.content.clone(),
                        metrics,
                        references: self
                            .plan
                            .knowledge
                            .as_ref()
                            .map(|plan| plan.take_references())
                            .unwrap_or_default(),
                    },
                )
            }
            Ending::Paused(tools) => {
                let content = pause_message(&tools);
                self.run.pending_tools = tools.clone();
                (
                    RunStatus::Paused,
                    RunEventData::RunPaused { tools, content },
                )
            }
            Ending::Cancelled => (
                RunStatus::Cancelled,
                RunEventData::RunCancelled {
                    reason: "cancelled by request".to_owned(),
                    content: self.content.clone(),
                },
            ),
            Ending::Failed {
                message,
                error_type,
            } => {
                self.run.error = Some(message.clone());
                (
                    RunStatus::Error,
                    RunEventData::RunError {
                        content: message,
                        error_type,
                    },
                )
            }
        };
        self.run.status = status;
        let last = self.record(data);
        self.flush_final().await;
        self.live.publish(last);
        self.hub.remove(self.run.id);
        self.live.finish();
    }

    /// Automatic memory, after a completed run: the model picks out new facts about the user and
    /// they are stored. A failure here is logged and does not fail the run, whose answer stands.
    async fn update_memories(&mut self) {
        let Some(plan) = self.plan.memory.clone().filter(|plan| plan.automatic) else {
            return;
        };
        self.emit(RunEventData::MemoryUpdateStarted {});
        let outcome = super::memory::extract_and_store(
            &plan,
            &self.plan.provider,
            &self.plan.model,
            &self.run,
        )
        .await;
        let memories = match outcome {
            Ok((memories, usage)) => {
                self.run.metrics.add_usage(usage);
                memories
            }
            Err(error) => {
                tracing::warn!(%error, "automatic memory failed");
                Vec::new()
            }
        };
        self.emit(RunEventData::MemoryUpdateCompleted { memories });
    }

    async fn drive(&mut self, start: Start) -> Ending {
        self.run.status = RunStatus::Running;
        if let Some(seconds) = self.run.limits.max_seconds {
            let left = (seconds as f64 - self.run.metrics.duration).max(0.0);
            self.deadline = tokio::time::Instant::now() + Duration::from_secs_f64(left);
        }
        match start {
            Start::Fresh => {
                let data = RunEventData::RunStarted {
                    model: self.plan.model.clone(),
                    model_provider: self.plan.provider.display_name().to_owned(),
                };
                self.emit(data);
            }
            Start::CancelledWhileQueued => return Ending::Cancelled,
            Start::Continue(resolved) => {
                if let Some(ending) = self.apply_resolutions(resolved).await {
                    return ending;
                }
            }
        }
        if self.plan.with_history {
            match self.history().await {
                Ok(history) => self.plan.preamble.extend(history),
                Err(error) => {
                    return Ending::Failed {
                        message: format!("reading the session's history failed: {error}"),
                        error_type: "store_failed".to_owned(),
                    }
                }
            }
        }
        loop {
            if let Some(ending) = self.check_limits() {
                return ending;
            }
            if self.run.iterations > 0 {
                self.flush().await;
            }
            self.run.iterations += 1;
            let calls = match self.call_model().await {
                Ok(calls) => calls,
                Err(ending) => return ending,
            };
            if calls.is_empty() {
                return Ending::Completed;
            }
            if let Some(ending) = self.handle_calls(calls).await {
                return ending;
            }
        }
    }

    fn check_limits(&self) -> Option<Ending> {
        let limits = self.run.limits;
        if let Some(max) = limits.max_iterations {
            if self.run.iterations >= max {
                return Some(Ending::Failed {
                    message: format!(
                        "the run reached its limit of {max} model calls (max_iterations) without an answer"
                    ),
                    error_type: "iteration_limit_reached".to_owned(),
                });
            }
        }
        if let Some(max) = limits.max_tokens {
            if self.run.metrics.total_tokens >= max {
                return Some(Ending::Failed {
                    message: format!(
                        "the run used {} tokens, reaching its limit of {max} (max_tokens)",
                        self.run.metrics.total_tokens
                    ),
                    error_type: "token_limit_reached".to_owned(),
                });
            }
        }
        None
    }

    /// One model call, streamed. Returns the tool calls the model made.
    async fn call_model(&mut self) -> Result<Vec<ToolCall>, Ending> {
        let provider_name = self.plan.provider.display_name().to_owned();
        self.emit(RunEventData::ModelRequestStarted {
            model: self.plan.model.clone(),
            model_provider: provider_name.clone(),
        });
        let mut messages = self.plan.preamble.clone();
        messages.extend(self.run.messages.iter().cloned());
        let request = ModelRequest {
            model: self.plan.model.clone(),
            messages,
            tools: self.plan.definitions.clone(),
            max_tokens: None,
            ..Default::default()
        };
        let requested_at = Instant::now();
        let cancel = self.live.cancel.clone();
        let deadline = self.deadline;
        let mut stream = tokio::select! {
            biased;
            _ = cancel.cancelled() => return Err(Ending::Cancelled),
            _ = tokio::time::sleep_until(deadline) => return Err(time_limit(&self.run)),
            opened = self.plan.provider.stream(request) => opened.map_err(model_failure)?,
        };
        self.content.clear();
        let mut calls = Vec::new();
        let mut usage = agentd_core::run::Usage::default();
        let mut first_token = None;
        let mut finished = false;
        loop {
            let next = tokio::select! {
                biased;
                _ = cancel.cancelled() => return Err(Ending::Cancelled),
                _ = tokio::time::sleep_until(deadline) => return Err(time_limit(&self.run)),
                next = stream.next() => next,
            };
            let Some(item) = next else { break };
            match item.map_err(model_failure)? {
                ModelEvent::Text(delta) => {
                    if delta.is_empty() {
                        continue;
                    }
                    first_token.get_or_insert_with(|| requested_at.elapsed().as_secs_f64());
                    self.content.push_str(&delta);
                    self.emit(RunEventData::RunContent { content: delta });
                    if self.last_flush.elapsed() >= FLUSH_EVERY {
                        self.flush().await;
                    }
                }
                ModelEvent::ToolCall(call) => calls.push(call),
                ModelEvent::Usage(reported) => usage += reported,
                ModelEvent::Finished(reason) => {
                    finished = true;
                    if reason == FinishReason::Length && calls.is_empty() {
                        tracing::info!("the model stopped at its output token limit");
                    }
                }
            }
        }
        if !finished {
            return Err(model_failure(ModelError::Malformed(
                "the stream ended without a finish".to_owned(),
            )));
        }
        if self.run.metrics.time_to_first_token.is_none() {
            self.run.metrics.time_to_first_token = first_token;
        }
        self.run.metrics.add_usage(usage);
        self.emit(RunEventData::ModelRequestCompleted {
            model: self.plan.model.clone(),
            model_provider: provider_name,
            input_tokens: usage.input_tokens,
            output_tokens: usage.output_tokens,
            total_tokens: usage.total_tokens,
            time_to_first_token: first_token,
        });
        self.run.messages.push(ChatMessage::Assistant {
            content: (!self.content.is_empty()).then(|| self.content.clone()),
            tool_calls: calls.clone(),
        });
        Ok(calls)
    }

    /// Executes the server tools among `calls` (in parallel) and collects those the client must
    /// resolve. Returns an ending when the run must stop here.
    async fn handle_calls(&mut self, calls: Vec<ToolCall>) -> Option<Ending> {
        let mut ready = Vec::new();
        let mut waiting = Vec::new();
        for call in &calls {
            let mut execution = ToolExecution::requested(call);
            match self.plan.tools.get(&call.name) {
                None => {
                    self.emit(RunEventData::ToolCallStarted {
                        tool: execution.clone(),
                    });
                    let known: Vec<&str> = self.plan.tools.keys().map(String::as_str).collect();
                    let message = format!(
                        "no tool named `{}`; available: [{}]",
                        call.name,
                        known.join(", ")
                    );
                    self.tool_failed(execution, message);
                }
                Some(ToolKind::Server {
                    confirm: false,
                    tool,
                }) => ready.push((execution, tool.clone())),
                Some(ToolKind::Server { confirm: true, .. }) => {
                    execution.requires_confirmation = true;
                    waiting.push(execution);
                }
                Some(ToolKind::Client) => {
                    execution.external_execution_required = true;
                    waiting.push(execution);
                }
            }
        }
        if let Some(ending) = self.run_server_tools(ready).await {
            return Some(ending);
        }
        if waiting.is_empty() {
            None
        } else {
            Some(Ending::Paused(waiting))
        }
    }

    /// Runs server tools concurrently: every `ToolCallStarted` first, then the results in call order.
    async fn run_server_tools(
        &mut self,
        ready: Vec<(ToolExecution, Arc<dyn ServerTool>)>,
    ) -> Option<Ending> {
        if ready.is_empty() {
            return None;
        }
        for (execution, _) in &ready {
            self.emit(RunEventData::ToolCallStarted {
                tool: execution.clone(),
            });
        }
        let calls = ready.into_iter().map(|(execution, tool)| async move {
            let start = epoch_seconds();
            let outcome = tool.call(execution.tool_args.clone()).await;
            (execution, outcome, start)
        });
        let cancel = self.live.cancel.clone();
        let results = tokio::select! {
            biased;
            _ = cancel.cancelled() => return Some(Ending::Cancelled),
            _ = tokio::time::sleep_until(self.deadline) => return Some(time_limit(&self.run)),
            results = futures::future::join_all(calls) => results,
        };
        for (mut execution, outcome, start) in results {
            let end = epoch_seconds();
            execution.metrics = Some(ToolMetrics {
                start_time: start,
                end_time: end,
                duration: end - start,
            });
            match outcome {
                Ok(result) => self.tool_succeeded(execution, result),
                Err(message) => self.tool_failed(execution, message),
            }
        }
        None
    }

    fn tool_succeeded(&mut self, mut execution: ToolExecution, result: String) {
        let duration = execution.metrics.map_or(0.0, |m| m.duration);
        let content = format!(
            "{}({}) completed in {duration:.4}s.",
            execution.tool_name,
            args_text(&execution.tool_args)
        );
        self.run.messages.push(ChatMessage::Tool {
            tool_call_id: execution.tool_call_id.clone(),
            content: result.clone(),
        });
        execution.result = Some(result);
        execution.tool_call_error = Some(false);
        self.emit(RunEventData::ToolCallCompleted {
            tool: execution,
            content,
        });
    }

    fn tool_failed(&mut self, mut execution: ToolExecution, message: String) {
        self.run.messages.push(ChatMessage::Tool {
            tool_call_id: execution.tool_call_id.clone(),
            content: format!("Error: {message}"),
        });
        execution.result = Some(message.clone());
        execution.tool_call_error = Some(true);
        self.emit(RunEventData::ToolCallError {
            tool: execution,
            error: message,
        });
    }

    /// Applies the client's answers to the pending tools of a continued run.
    async fn apply_resolutions(&mut self, resolved: Vec<ToolExecution>) -> Option<Ending> {
        let pending = std::mem::take(&mut self.run.pending_tools);
        let answers: HashMap<String, ToolExecution> = resolved
            .into_iter()
            .map(|t| (t.tool_call_id.clone(), t))
            .collect();
        let mut ready = Vec::new();
        for mut execution in pending {
            let answer = answers.get(&execution.tool_call_id);
            if execution.external_execution_required {
                let result = answer.and_then(|a| a.result.clone()).unwrap_or_default();
                self.emit(RunEventData::ToolCallStarted {
                    tool: execution.clone(),
                });
                self.tool_succeeded(execution, result);
                continue;
            }
            let confirmed = answer.and_then(|a| a.confirmed).unwrap_or(false);
            execution.confirmed = Some(confirmed);
            execution.confirmation_note = answer.and_then(|a| a.confirmation_note.clone());
            let tool = match self.plan.tools.get(&execution.tool_name) {
                Some(ToolKind::Server { tool, .. }) => tool.clone(),
                _ => {
                    self.emit(RunEventData::ToolCallStarted {
                        tool: execution.clone(),
                    });
                    let message =
                        format!("the tool `{}` is no longer available", execution.tool_name);
                    self.tool_failed(execution, message);
                    continue;
                }
            };
            if confirmed {
                ready.push((execution, tool));
            } else {
                self.emit(RunEventData::ToolCallStarted {
                    tool: execution.clone(),
                });
                let note = execution
                    .confirmation_note
                    .clone()
                    .map(|n| format!(": {n}"))
                    .unwrap_or_default();
                let message = format!("the user rejected this tool call{note}");
                self.tool_failed(execution, message);
            }
        }
        self.run_server_tools(ready).await
    }

    /// The transcript of the session's completed runs before this one, oldest first.
    async fn history(&self) -> Result<Vec<ChatMessage>, agentd_store::StoreError> {
        let runs = self
            .store
            .session_history(self.run.tenant_id, &self.run.session_id, HISTORY_RUNS)
            .await?;
        Ok(runs
            .into_iter()
            .filter(|run| run.id < self.run.id)
            .flat_map(|run| run.messages)
            .collect())
    }

    /// Numbers an event and records it for the next flush.
    fn record(&mut self, data: RunEventData) -> Arc<RunEvent> {
        self.run.last_seq += 1;
        let event = RunEvent {
            run_id: self.run.id,
            seq: self.run.last_seq,
            created_at: agentd_core::now(),
            data,
        };
        self.unflushed.push(event.clone());
        Arc::new(event)
    }

    /// Records an event and publishes it at once.
    fn emit(&mut self, data: RunEventData) {
        let event = self.record(data);
        self.live.publish(event);
    }

    /// Stores the run and the events recorded since the last flush.
    /// Stores the segment's end, retrying a failed write a few times: the terminal event (or the
    /// pause) is published only after it is stored, so that a client that reconnects finds it. If
    /// the store stays down, it is published anyway, so live streams end; the run row is then left
    /// unfinished, and the node's restart recovery ends it with `RunError`.
    async fn flush_final(&mut self) {
        for delay in FINAL_FLUSH_RETRIES {
            self.flush().await;
            if self.unflushed.is_empty() {
                return;
            }
            tokio::time::sleep(delay).await;
        }
        self.flush().await;
    }

    async fn flush(&mut self) {
        self.run.updated_at = agentd_core::now();
        self.last_flush = Instant::now();
        let events = std::mem::take(&mut self.unflushed);
        match self
            .store
            .save_run(&self.run, self.stored_seq, &events)
            .await
        {
            Ok(Update::Applied) => self.stored_seq = self.run.last_seq,
            Ok(other) => {
                tracing::error!(
                    ?other,
                    "the run changed under its execution; events not stored"
                )
            }
            Err(error) => {
                tracing::error!(error = %error, "storing the run failed; keeping its events for the next flush");
                self.unflushed = events;
            }
        }
    }
}

fn model_failure(error: ModelError) -> Ending {
    Ending::Failed {
        message: error.to_string(),
        error_type: error.error_type().to_owned(),
    }
}

fn time_limit(run: &Run) -> Ending {
    Ending::Failed {
        message: format!(
            "the run reached its time limit of {} s (max_seconds)",
            run.limits.max_seconds.unwrap_or_default()
        ),
        error_type: "time_limit_reached".to_owned(),
    }
}

fn pause_message(tools: &[ToolExecution]) -> String {
    if tools.iter().any(|t| t.requires_confirmation) {
        "I have tools to execute, but I need confirmation.".to_owned()
    } else {
        "I have tools to execute, but they must be executed by the client.".to_owned()
    }
}

fn args_text(args: &Value) -> String {
    match args {
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", "),
        other => other.to_string(),
    }
}

fn epoch_seconds() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
