"""Flax Linen models: attention and position encodings (kexue.fm 9105, 9444), the Perturb-Max head (9085),
BERT and cross-/bi-encoders (9341, 9368), small GANs with a mapping network (9147).

* :mod:`~research.nn.attention` -- multi-head attention with a switchable position encoding and normaliser,
  ``A = normalize(q k^T / sqrt(d) + bias(pos_i - pos_j))``, plus ``log n`` scaling (9444):
  :class:`MultiHeadAttention`, :class:`AttentionCore`, :class:`AttentionConfig`, :func:`causal_mask`.
* :mod:`~research.nn.position` -- position encodings that take explicit positions: sinusoidal, learned,
  RoPE (:func:`apply_rope`), T5 buckets (:func:`t5_bucket`), ALiBi (:func:`alibi_bias`), Transformer-XL
  (:func:`txl_position_logits`); ``PE_NAMES`` lists them.
* :mod:`~research.nn.position_sampling` -- the position samplers of 9444 (RPE random / grid, equal mean):
  :func:`sample_positions`, :class:`PositionConfig`.
* :mod:`~research.nn.transformer` -- encoder / causal LM blocks: :class:`Transformer`, :class:`EncoderBlock`,
  :class:`GAUBlock`, :func:`masked_cross_entropy`, :func:`mlm_corrupt`.
* :mod:`~research.nn.heads` -- classifier heads: :class:`SoftmaxHead` and :class:`PerturbMaxHead`
  (``p(y) = P(y = argmax (z + eps))``, 9085), with :func:`nll_loss`.
* :mod:`~research.nn.bert` -- BERT with a Hugging Face checkpoint loader: :class:`BertModel`,
  :class:`BertForMaskedLM`, :func:`load_pretrained`, :func:`load_minilm`, :class:`SentenceEncoder`.
* :mod:`~research.nn.cross_encoder` -- :class:`CrossEncoder` (one logit per pair, trained with CoSENT),
  :class:`BiEncoder`, :class:`BiEncoderSBert`.
* :mod:`~research.nn.gan` -- :class:`Generator`, :class:`Discriminator`, :class:`MappingNetwork`,
  :func:`init_gan_state`, :func:`make_gan_step`.

Example::

    import jax, jax.numpy as jnp
    from research import nn
    head = nn.SoftmaxHead(num_classes=3)
    params = head.init(jax.random.key(0), jnp.ones((2, 5)))
    logits = head.apply(params, jnp.ones((2, 5)))
"""
from research.nn import attention, bert, cross_encoder, gan, heads, position, position_sampling, transformer
from research.nn.attention import AttentionConfig, AttentionCore, MultiHeadAttention, causal_mask, window_mask
from research.nn.bert import (BertConfig, BertForMaskedLM, BertModel, BertTokenizer, CheckpointError,
                              SentenceEncoder, load_minilm, load_pretrained, save_pretrained)
from research.nn.cross_encoder import BiEncoder, BiEncoderSBert, CrossEncoder
from research.nn.gan import Discriminator, Generator, MappingNetwork, init_gan_state, make_gan_step
from research.nn.heads import PerturbMaxHead, SoftmaxHead, nll_loss
from research.nn.position import PE_NAMES, alibi_bias, apply_rope, sinusoidal, t5_bucket, txl_position_logits
from research.nn.position_sampling import PositionConfig, sample_positions
from research.nn.transformer import EncoderBlock, GAUBlock, Transformer, masked_cross_entropy, mlm_corrupt

__all__ = [
    "attention", "bert", "cross_encoder", "gan", "heads", "position", "position_sampling", "transformer",
    "AttentionConfig", "AttentionCore", "MultiHeadAttention", "causal_mask", "window_mask",
    "BertConfig", "BertForMaskedLM", "BertModel", "BertTokenizer", "CheckpointError", "SentenceEncoder",
    "load_minilm", "load_pretrained", "save_pretrained",
    "BiEncoder", "BiEncoderSBert", "CrossEncoder",
    "Discriminator", "Generator", "MappingNetwork", "init_gan_state", "make_gan_step",
    "PerturbMaxHead", "SoftmaxHead", "nll_loss",
    "PE_NAMES", "alibi_bias", "apply_rope", "sinusoidal", "t5_bucket", "txl_position_logits",
    "PositionConfig", "sample_positions",
    "EncoderBlock", "GAUBlock", "Transformer", "masked_cross_entropy", "mlm_corrupt",
]
