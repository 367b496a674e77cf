//! The `local` provider: sentence embeddings computed in-process, with no server and no network.
//!
//! It runs a BERT sentence-embedding model (all-MiniLM-L6-v2 and its kin) from a folder holding
//! `config.json`, `model.safetensors` and `tokenizer.json`, as sentence-transformers lays them out:
//! tokenize (the model's own `tokenizer.json`), run the encoder with candle on the CPU, mean-pool the
//! token states under the attention mask and L2-normalise. The encoder is written out here (a few
//! dozen lines on candle's layers) rather than taken from a model zoo crate.
//!
//! The folder is read once, when the provider is built, so a wrong path fails at start. Inference is
//! CPU-bound and runs on the blocking pool; texts are grouped by length so that short texts are not
//! padded to the longest one of the whole call.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{Embedding, LayerNorm, Linear, VarBuilder};
use serde::Deserialize;
use tokenizers::{PaddingParams, Tokenizer, TruncationParams};

use crate::{EmbedRequest, Embeddings, ModelError, ModelProvider, ModelRequest, ModelStream};

/// Texts embedded in one forward pass, after sorting by length.
const BATCH: usize = 16;

/// The longest input in tokens; longer texts are cut (sentence-transformers' `max_seq_length` of
/// the MiniLM models).
const MAX_TOKENS: usize = 256;

/// Sentence embeddings from a local BERT model.
pub struct LocalProvider {
    /// The model names it answers to.
    models: Vec<String>,
    encoder: Arc<SentenceEncoder>,
}

impl LocalProvider {
    /// Loads the model folder at `path`. It answers to the names in `models` or, when that is empty,
    /// to the folder's name.
    pub fn new(path: &Path, models: &[String]) -> Result<Self, ModelError> {
        let encoder = SentenceEncoder::load(path)?;
        let models = if models.is_empty() {
            let name = path
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_else(|| "local".to_owned());
            vec![name]
        } else {
            models.to_vec()
        };
        Ok(Self {
            models,
            encoder: Arc::new(encoder),
        })
    }

    /// The size of the vectors it returns.
    pub fn dimensions(&self) -> usize {
        self.encoder.hidden_size
    }
}

#[async_trait]
impl ModelProvider for LocalProvider {
    fn display_name(&self) -> &str {
        "Local"
    }

    async fn stream(&self, request: ModelRequest) -> Result<ModelStream, ModelError> {
        Err(ModelError::Unsupported(format!(
            "`{}` is a local embedding model: it has no chat or completions API",
            request.model
        )))
    }

    async fn embed(&self, request: EmbedRequest) -> Result<Embeddings, ModelError> {
        if !self.models.contains(&request.model) {
            return Err(ModelError::Rejected {
                status: 404,
                message: format!(
                    "no local model `{}`; this provider serves {}",
                    request.model,
                    self.models.join(", ")
                ),
            });
        }
        if let Some(dimensions) = request.dimensions {
            if dimensions as usize != self.encoder.hidden_size {
                return Err(ModelError::Rejected {
                    status: 400,
                    message: format!(
                        "`{}` makes {}-dimensional vectors and cannot shorten them to {dimensions}",
                        request.model, self.encoder.hidden_size
                    ),
                });
            }
        }
        let encoder = Arc::clone(&self.encoder);
        tokio::task::spawn_blocking(move || encoder.embed(&request.input))
            .await
            .map_err(|err| ModelError::Malformed(format!("the local model failed: {err}")))?
    }
}

/// `config.json` of a BERT model: the fields the encoder needs.
#[derive(Deserialize)]
struct BertConfig {
    hidden_size: usize,
    num_attention_heads: usize,
    num_hidden_layers: usize,
    intermediate_size: usize,
    max_position_embeddings: usize,
    vocab_size: usize,
    #[serde(default = "default_type_vocab_size")]
    type_vocab_size: usize,
    #[serde(default = "default_layer_norm_eps")]
    layer_norm_eps: f64,
    #[serde(default)]
    hidden_act: Option<String>,
}

fn default_type_vocab_size() -> usize {
    2
}

fn default_layer_norm_eps() -> f64 {
    1e-12
}

/// Tokenizer and BERT encoder with mean pooling.
struct SentenceEncoder {
    tokenizer: Tokenizer,
    hidden_size: usize,
    max_tokens: usize,
    embeddings: BertEmbeddings,
    layers: Vec<BertLayer>,
}

impl SentenceEncoder {
    fn load(path: &Path) -> Result<Self, ModelError> {
        let file = |name: &str| -> PathBuf { path.join(name) };
        let unusable = |what: String| {
            ModelError::Config(format!(
                "the local model folder `{}` is not usable: {what}",
                path.display()
            ))
        };
        let read = |name: &str| {
            std::fs::read(file(name))
                .map_err(|err| unusable(format!("cannot read `{name}`: {err}")))
        };
        let config: BertConfig = serde_json::from_slice(&read("config.json")?)
            .map_err(|err| unusable(format!("`config.json`: {err}")))?;
        if let Some(act) = config.hidden_act.as_deref() {
            if act != "gelu" {
                return Err(unusable(format!(
                    "`config.json` names the activation `{act}`; only BERT's `gelu` is supported"
                )));
            }
        }
        if config.num_attention_heads == 0
            || !config
                .hidden_size
                .is_multiple_of(config.num_attention_heads)
        {
            return Err(unusable(
                "`config.json`: hidden_size must be a multiple of num_attention_heads".to_owned(),
            ));
        }
        let max_tokens = MAX_TOKENS.min(config.max_position_embeddings);
        let mut tokenizer = Tokenizer::from_file(file("tokenizer.json"))
            .map_err(|err| unusable(format!("`tokenizer.json`: {err}")))?;
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: max_tokens,
                ..TruncationParams::default()
            }))
            .map_err(|err| unusable(format!("`tokenizer.json`: {err}")))?;
        tokenizer.with_padding(Some(PaddingParams::default()));
        let weights = read("model.safetensors")?;
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &Device::Cpu)
            .map_err(|err| unusable(format!("`model.safetensors`: {err}")))?;
        let weights_error = |err: candle_core::Error| {
            unusable(format!(
                "`model.safetensors` does not fit `config.json`: {err}"
            ))
        };
        // sentence-transformers saves the bare encoder; transformers' checkpoints prefix `bert.`.
        let vb = if vb.contains_tensor("embeddings.word_embeddings.weight") {
            vb
        } else {
            vb.pp("bert")
        };
        let embeddings =
            BertEmbeddings::load(vb.pp("embeddings"), &config).map_err(weights_error)?;
        let layers = (0..config.num_hidden_layers)
            .map(|index| BertLayer::load(vb.pp(format!("encoder.layer.{index}")), &config))
            .collect::<Result<Vec<_>, _>>()
            .map_err(weights_error)?;
        Ok(Self {
            tokenizer,
            hidden_size: config.hidden_size,
            max_tokens,
            embeddings,
            layers,
        })
    }

    /// One unit vector per text, in input order.
    fn embed(&self, texts: &[String]) -> Result<Embeddings, ModelError> {
        let failed = |err: String| ModelError::Malformed(format!("the local model failed: {err}"));
        // Group by length so a batch is padded only to its own longest text.
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&index| texts[index].len());
        let mut vectors = vec![Vec::new(); texts.len()];
        let mut prompt_tokens = 0u64;
        for batch in order.chunks(BATCH) {
            let inputs: Vec<&str> = batch.iter().map(|&index| texts[index].as_str()).collect();
            let encodings = self
                .tokenizer
                .encode_batch(inputs, true)
                .map_err(|err| failed(err.to_string()))?;
            let length = encodings
                .first()
                .map(|encoding| encoding.len())
                .unwrap_or(0)
                .min(self.max_tokens);
            let mut ids = Vec::with_capacity(batch.len() * length);
            let mut mask = Vec::with_capacity(batch.len() * length);
            for encoding in &encodings {
                ids.extend_from_slice(&encoding.get_ids()[..length]);
                mask.extend_from_slice(&encoding.get_attention_mask()[..length]);
                prompt_tokens += encoding.get_attention_mask()[..length]
                    .iter()
                    .map(|&bit| u64::from(bit))
                    .sum::<u64>();
            }
            let pooled = self
                .forward(&ids, &mask, batch.len(), length)
                .map_err(|err| failed(err.to_string()))?;
            for (&index, vector) in batch.iter().zip(pooled) {
                vectors[index] = vector;
            }
        }
        Ok(Embeddings {
            vectors,
            prompt_tokens,
        })
    }

    /// The encoder over a padded batch, mean-pooled under the mask and normalised.
    fn forward(
        &self,
        ids: &[u32],
        mask: &[u32],
        batch: usize,
        length: usize,
    ) -> candle_core::Result<Vec<Vec<f32>>> {
        let device = Device::Cpu;
        let ids = Tensor::from_slice(ids, (batch, length), &device)?;
        let mask = Tensor::from_slice(mask, (batch, length), &device)?.to_dtype(DType::F32)?;
        // Padding gets a large negative score before the softmax: (batch, 1, 1, length).
        let bias = ((mask.ones_like()? - &mask)? * -1e9)?.reshape((batch, 1, 1, length))?;
        let mut states = self.embeddings.forward(&ids)?;
        for layer in &self.layers {
            states = layer.forward(&states, &bias)?;
        }
        let mask = mask.unsqueeze(2)?; // (batch, length, 1)
        let summed = states.broadcast_mul(&mask)?.sum(1)?;
        let counts = mask.sum(1)?.clamp(1e-9, f64::MAX)?;
        let mean = summed.broadcast_div(&counts)?;
        let norms = mean.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12, f64::MAX)?;
        mean.broadcast_div(&norms)?.to_vec2::<f32>()
    }
}

struct BertEmbeddings {
    words: Embedding,
    positions: Embedding,
    token_types: Embedding,
    norm: LayerNorm,
}

impl BertEmbeddings {
    fn load(vb: VarBuilder, config: &BertConfig) -> candle_core::Result<Self> {
        Ok(Self {
            words: candle_nn::embedding(
                config.vocab_size,
                config.hidden_size,
                vb.pp("word_embeddings"),
            )?,
            positions: candle_nn::embedding(
                config.max_position_embeddings,
                config.hidden_size,
                vb.pp("position_embeddings"),
            )?,
            token_types: candle_nn::embedding(
                config.type_vocab_size,
                config.hidden_size,
                vb.pp("token_type_embeddings"),
            )?,
            norm: layer_norm(vb.pp("LayerNorm"), config)?,
        })
    }

    /// Word + position + token type (all segment 0), normalised: (batch, length, hidden).
    fn forward(&self, ids: &Tensor) -> candle_core::Result<Tensor> {
        let (_, length) = ids.dims2()?;
        let device = ids.device();
        let positions = Tensor::arange(0u32, length as u32, device)?.unsqueeze(0)?;
        let types = ids.zeros_like()?;
        let sum = self
            .words
            .forward(ids)?
            .broadcast_add(&self.positions.forward(&positions)?)?
            .add(&self.token_types.forward(&types)?)?;
        self.norm.forward(&sum)
    }
}

struct BertLayer {
    heads: usize,
    query: Linear,
    key: Linear,
    value: Linear,
    attention_out: Linear,
    attention_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    output_norm: LayerNorm,
}

impl BertLayer {
    fn load(vb: VarBuilder, config: &BertConfig) -> candle_core::Result<Self> {
        let hidden = config.hidden_size;
        let attention = vb.pp("attention");
        Ok(Self {
            heads: config.num_attention_heads,
            query: candle_nn::linear(hidden, hidden, attention.pp("self.query"))?,
            key: candle_nn::linear(hidden, hidden, attention.pp("self.key"))?,
            value: candle_nn::linear(hidden, hidden, attention.pp("self.value"))?,
            attention_out: candle_nn::linear(hidden, hidden, attention.pp("output.dense"))?,
            attention_norm: layer_norm(attention.pp("output.LayerNorm"), config)?,
            intermediate: candle_nn::linear(
                hidden,
                config.intermediate_size,
                vb.pp("intermediate.dense"),
            )?,
            output: candle_nn::linear(config.intermediate_size, hidden, vb.pp("output.dense"))?,
            output_norm: layer_norm(vb.pp("output.LayerNorm"), config)?,
        })
    }

    /// Self-attention and the feed-forward block, each with its residual and layer norm.
    fn forward(&self, states: &Tensor, bias: &Tensor) -> candle_core::Result<Tensor> {
        let (batch, length, hidden) = states.dims3()?;
        let head_size = hidden / self.heads;
        // (batch, length, hidden) → (batch, heads, length, head_size)
        let split = |tensor: Tensor| -> candle_core::Result<Tensor> {
            tensor
                .reshape((batch, length, self.heads, head_size))?
                .transpose(1, 2)?
                .contiguous()
        };
        let query = split(self.query.forward(states)?)?;
        let key = split(self.key.forward(states)?)?;
        let value = split(self.value.forward(states)?)?;
        let scores = (query.matmul(&key.t()?.contiguous()?)? / (head_size as f64).sqrt())?
            .broadcast_add(bias)?;
        let weights = candle_nn::ops::softmax_last_dim(&scores)?;
        let context = weights
            .matmul(&value)?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((batch, length, hidden))?;
        let attended = self
            .attention_norm
            .forward(&(self.attention_out.forward(&context)? + states)?)?;
        let inner = self.intermediate.forward(&attended)?.gelu_erf()?;
        self.output_norm
            .forward(&(self.output.forward(&inner)? + &attended)?)
    }
}

fn layer_norm(vb: VarBuilder, config: &BertConfig) -> candle_core::Result<LayerNorm> {
    candle_nn::layer_norm(config.hidden_size, config.layer_norm_eps, vb)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_that_is_not_a_model_is_a_config_error_naming_the_file() {
        let dir = std::env::temp_dir().join(format!("agentd-local-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let Err(ModelError::Config(message)) = LocalProvider::new(&dir, &[]) else {
            panic!("an empty folder loaded");
        };
        assert!(message.contains("config.json"), "{message}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The vectors match sentence-transformers' own (figures taken from it, for the same model and
    /// sentences), so tokenisation, the encoder, pooling and normalisation are all as upstream.
    #[tokio::test]
    async fn minilm_matches_sentence_transformers() {
        let Some(path) = agentd_testkit::python::minilm() else {
            return;
        };
        let provider = LocalProvider::new(&path, &["all-minilm-l6-v2".to_owned()]).unwrap();
        assert_eq!(provider.dimensions(), 384);
        let input = [
            "The cat sits on the mat.",
            "A kitten is resting on a rug.",
            "Stock markets fell sharply today.",
        ]
        .map(str::to_owned)
        .to_vec();
        let embeddings = provider
            .embed(EmbedRequest {
                model: "all-minilm-l6-v2".into(),
                input,
                dimensions: None,
            })
            .await
            .unwrap();
        let [cat, kitten, stocks] = &embeddings.vectors[..] else {
            panic!("three vectors expected");
        };
        let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
        let expected_head = [0.13418, -0.0329, -0.0248, 0.04144, -0.03635, 0.04181];
        for (got, want) in cat.iter().zip(expected_head) {
            assert!((got - want).abs() < 1e-3, "{:?}", &cat[..6]);
        }
        assert!((dot(cat, cat) - 1.0).abs() < 1e-4);
        assert!(
            (dot(cat, kitten) - 0.64113).abs() < 1e-3,
            "{}",
            dot(cat, kitten)
        );
        assert!(
            (dot(cat, stocks) - 0.04623).abs() < 1e-3,
            "{}",
            dot(cat, stocks)
        );
        assert!(embeddings.prompt_tokens > 0);

        let unknown = provider
            .embed(EmbedRequest {
                model: "other".into(),
                input: vec!["x".into()],
                dimensions: None,
            })
            .await
            .unwrap_err();
        assert!(matches!(unknown, ModelError::Rejected { status: 404, .. }));
    }
}
