"""Reference retrieval from an image pool by prompt: the caption stand-in and CLIP by path."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from generation.retrieval import ReferenceRetriever, load_pool, retrieve_references


def _img(seed):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (32, 32, 3), dtype=np.uint8))


def test_folder_pool_with_captions_and_file_names(tmp_path):
    _img(0).save(tmp_path / "red_sports_car.png")
    _img(1).save(tmp_path / "b.png")
    (tmp_path / "captions.tsv").write_text("b.png\ta bowl of ramen noodles\n")
    pool = load_pool(tmp_path)
    assert sorted(p.caption for p in pool) == ["a bowl of ramen noodles", "red sports car"]
    with pytest.raises(FileNotFoundError, match="not a folder"):
        load_pool(tmp_path / "missing")


def test_caption_minilm_ranks_by_meaning(tmp_path):
    pytest.importorskip("sentence_transformers")
    pool = {
        "a bowl of ramen noodles": _img(1),
        "a red sports car on a race track": _img(2),
        "a snowy mountain cabin": _img(3),
    }
    r = ReferenceRetriever(pool)
    (best, sim), *_ = r.rank("fast cars and motor racing", k=3)
    assert best.caption == "a red sports car on a race track" and -1 <= sim <= 1
    assert retrieve_references("japanese noodle soup", pool) == [pool["a bowl of ramen noodles"]]
    with pytest.raises(ValueError, match="unknown retrieval encoder"):
        ReferenceRetriever(pool, encoder="siglip")


def test_clip_by_path_with_a_tiny_random_clip(tmp_path):
    pytest.importorskip("transformers")
    import torch
    from transformers import CLIPConfig, CLIPModel

    from generation.random_weights import byte_level_clip_tokenizer
    from workbench.encoders.image import _clip_processor_class

    torch.manual_seed(0)
    cfg = CLIPConfig(
        text_config=dict(
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=37,
            vocab_size=514,
            bos_token_id=512,
            eos_token_id=513,
            pad_token_id=513,
        ),
        vision_config=dict(
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=37,
            image_size=32,
            patch_size=8,
        ),
        projection_dim=16,
    )
    CLIPModel(cfg).save_pretrained(tmp_path)
    byte_level_clip_tokenizer().save_pretrained(tmp_path)
    _clip_processor_class()(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(tmp_path)
    pool = [(_img(i), f"image {i}") for i in range(3)]
    ranked = ReferenceRetriever(pool, encoder=f"clip:{tmp_path}").rank("a photo", k=2)
    assert len(ranked) == 2 and all(np.isfinite(s) and -1.0001 <= s <= 1.0001 for _, s in ranked)
