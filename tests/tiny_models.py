"""Tiny random-weight image-to-video pipelines, built from configs and saved to disk.

Why: the real checkpoints are tens of GB and the Hugging Face hub is out of reach in CI. These
pipelines have the same classes, the same `model_index.json` layout and the same call
signatures as the real ones (sizes as in diffusers' own `get_dummy_components`), so saving them
with `save_pretrained` and loading them back through the production loader exercises the same
code path a downloaded model takes. A CLI run on any of them takes a second or two on a CPU.

No network: the T5-style tokenizer is a word-level `tokenizers` model built on the fly
(:func:`bench.random_weights.word_tokenizer`).

Use the session fixtures (`tiny_ltx_dir`, `tiny_wan_dir`, `tiny_wan_a14b_dir`,
`tiny_wan_ti2v_dir`, `tiny_svd_dir`, `tiny_cogvideox_dir`, `tiny_model_dirs`) or call
:func:`build` directly. Each directory is built once per process (cached), even if several
test modules import the fixtures.
"""

from __future__ import annotations

import json
import os

# Nothing in the tests may reach the hub; huggingface_hub reads this at import time.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any

import pytest  # noqa: E402

from bench.random_weights import word_tokenizer  # noqa: E402

KINDS: tuple[str, ...] = ("ltx", "wan", "wan_a14b", "wan_ti2v", "svd", "cogvideox")
"""ltx: LTXConditionPipeline; wan: WanImageToVideoPipeline with a CLIP image encoder (Wan 2.1
I2V 14B layout); wan_a14b: Wan 2.2 I2V A14B layout (two experts, boundary_ratio, no image
encoder: first->last frame works); wan_ti2v: Wan 2.2 TI2V-5B layout (saved as WanPipeline with
expand_timesteps, 16x VAE); svd: StableVideoDiffusionPipeline; cogvideox:
CogVideoXImageToVideoPipeline with learned positional embeddings (fixed 32x32)."""


def build_text_encoder(d_model: int = 32, *, umt5: bool = False) -> Any:
    """A two-layer T5 encoder: T5 for LTX/CogVideoX (T5-XXL), UMT5 for Wan (UMT5-XXL)."""
    import torch
    from transformers import T5Config, T5EncoderModel, UMT5Config, UMT5EncoderModel

    torch.manual_seed(0)
    config_class, model_class = (
        (UMT5Config, UMT5EncoderModel) if umt5 else (T5Config, T5EncoderModel)
    )
    config = config_class(
        vocab_size=128,
        d_model=d_model,
        d_ff=37,
        d_kv=8,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    return model_class(config).eval()


def ltx_transformer() -> Any:
    """The tiny LTX transformer (seeded): 2 blocks, 4 heads of 8, 8 latent channels."""
    import torch
    from diffusers import LTXVideoTransformer3DModel

    torch.manual_seed(0)
    return LTXVideoTransformer3DModel(
        in_channels=8,
        out_channels=8,
        patch_size=1,
        patch_size_t=1,
        num_attention_heads=4,
        attention_head_dim=8,
        cross_attention_dim=32,
        num_layers=2,  # first-block cache needs a head and a tail block
        caption_channels=32,
    )


def _ltx(*, timestep_conditioning: bool = False) -> Any:
    import torch
    from diffusers import (
        AutoencoderKLLTXVideo,
        FlowMatchEulerDiscreteScheduler,
        LTXConditionPipeline,
    )

    transformer = ltx_transformer()
    torch.manual_seed(0)
    vae = AutoencoderKLLTXVideo(
        in_channels=3,
        out_channels=3,
        latent_channels=8,
        block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8),
        layers_per_block=(1, 1, 1, 1, 1),
        decoder_layers_per_block=(1, 1, 1, 1, 1),
        spatio_temporal_scaling=(True, True, False, False),
        decoder_spatio_temporal_scaling=(True, True, False, False),
        decoder_inject_noise=(False, False, False, False, False),
        upsample_residual=(False, False, False, False),
        upsample_factor=(1, 1, 1, 1),
        timestep_conditioning=timestep_conditioning,
        patch_size=1,
        patch_size_t=1,
        encoder_causal=True,
        decoder_causal=False,
    )
    return LTXConditionPipeline(
        transformer=transformer,
        vae=vae,
        scheduler=FlowMatchEulerDiscreteScheduler(),
        text_encoder=build_text_encoder(),
        tokenizer=word_tokenizer(),
    )


def build_gemma3(hidden_size: int = 32) -> Any:
    """A two-layer Gemma 3 (text and a one-layer vision tower), as LTX-2's text encoder: the
    pipeline stacks every hidden state, so the layer count shapes the connectors' input."""
    import torch
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration

    torch.manual_seed(0)
    config = Gemma3Config(
        text_config={
            "vocab_size": 128,
            "hidden_size": hidden_size,
            "intermediate_size": 2 * hidden_size,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "head_dim": 8,
            "max_position_embeddings": 512,
            "sliding_window": 64,
            "pad_token_id": 0,
        },
        vision_config={
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": 28,
            "patch_size": 14,
        },
        mm_tokens_per_image=4,
        boi_token_index=125,
        eoi_token_index=126,
        image_token_index=127,
    )
    return Gemma3ForConditionalGeneration(config).eval()


def _ltx2() -> Any:
    """LTX2ImageToVideoPipeline as in diffusers' own tests, with one change: the vocoder's
    upsampling (8 × 10 = 80 samples per mel frame, 100 mel frames a second) really makes
    8000 samples a second, the rate its config declares, so the sound lasts as long as the
    picture, as the real 24 kHz vocoder's does."""
    import torch
    from diffusers import (
        AutoencoderKLLTX2Audio,
        AutoencoderKLLTX2Video,
        FlowMatchEulerDiscreteScheduler,
        LTX2ImageToVideoPipeline,
        LTX2VideoTransformer3DModel,
    )
    from diffusers.pipelines.ltx2 import LTX2TextConnectors
    from diffusers.pipelines.ltx2.vocoder import LTX2Vocoder

    text_encoder = build_gemma3()
    hidden = text_encoder.config.text_config.hidden_size
    torch.manual_seed(0)
    transformer = LTX2VideoTransformer3DModel(
        in_channels=4,
        out_channels=4,
        patch_size=1,
        patch_size_t=1,
        num_attention_heads=2,
        attention_head_dim=8,
        cross_attention_dim=16,
        audio_in_channels=4,
        audio_out_channels=4,
        audio_num_attention_heads=2,
        audio_attention_head_dim=4,
        audio_cross_attention_dim=8,
        num_layers=2,
        qk_norm="rms_norm_across_heads",
        caption_channels=hidden,
        rope_double_precision=False,
        rope_type="split",
    )
    torch.manual_seed(0)
    connectors = LTX2TextConnectors(
        caption_channels=hidden,
        text_proj_in_factor=text_encoder.config.text_config.num_hidden_layers + 1,
        video_connector_num_attention_heads=4,
        video_connector_attention_head_dim=8,
        video_connector_num_layers=1,
        video_connector_num_learnable_registers=None,
        audio_connector_num_attention_heads=4,
        audio_connector_attention_head_dim=8,
        audio_connector_num_layers=1,
        audio_connector_num_learnable_registers=None,
        connector_rope_base_seq_len=32,
        rope_theta=10000.0,
        rope_double_precision=False,
        causal_temporal_positioning=False,
        rope_type="split",
    )
    torch.manual_seed(0)
    vae = AutoencoderKLLTX2Video(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=(8,),
        decoder_block_out_channels=(8,),
        layers_per_block=(1,),
        decoder_layers_per_block=(1, 1),
        spatio_temporal_scaling=(True,),
        decoder_spatio_temporal_scaling=(True,),
        decoder_inject_noise=(False, False),
        downsample_type=("spatial",),
        upsample_residual=(False,),
        upsample_factor=(1,),
        timestep_conditioning=False,
        patch_size=1,
        patch_size_t=1,
        encoder_causal=True,
        decoder_causal=False,
    )
    torch.manual_seed(0)
    audio_vae = AutoencoderKLLTX2Audio(
        base_channels=4,
        output_channels=2,
        ch_mult=(1,),
        num_res_blocks=1,
        attn_resolutions=None,
        in_channels=2,
        resolution=32,
        latent_channels=2,
        norm_type="pixel",
        causality_axis="height",
        dropout=0.0,
        mid_block_add_attention=False,
        sample_rate=16000,
        mel_hop_length=160,
        is_causal=True,
        mel_bins=8,
    )
    torch.manual_seed(0)
    vocoder = LTX2Vocoder(
        in_channels=audio_vae.config.output_channels * audio_vae.config.mel_bins,
        hidden_channels=32,
        out_channels=2,
        upsample_kernel_sizes=[16, 20],
        upsample_factors=[8, 10],
        resnet_kernel_sizes=[3],
        resnet_dilations=[[1, 3, 5]],
        leaky_relu_negative_slope=0.1,
        output_sampling_rate=8000,
    )
    return LTX2ImageToVideoPipeline(
        transformer=transformer,
        vae=vae,
        audio_vae=audio_vae,
        scheduler=FlowMatchEulerDiscreteScheduler(),
        text_encoder=text_encoder,
        tokenizer=word_tokenizer(),
        connectors=connectors,
        vocoder=vocoder,
    )


def _wan_vae(**overrides: Any) -> Any:
    import torch
    from diffusers import AutoencoderKLWan

    torch.manual_seed(0)
    config: dict[str, Any] = dict(
        base_dim=3,
        z_dim=16,
        dim_mult=[1, 1, 1, 1],
        num_res_blocks=1,
        temperal_downsample=[False, True, True],
    )
    config.update(overrides)
    return AutoencoderKLWan(**config)


def _wan_transformer(**overrides: Any) -> Any:
    import torch
    from diffusers import WanTransformer3DModel

    torch.manual_seed(0)
    config: dict[str, Any] = dict(
        patch_size=(1, 2, 2),
        num_attention_heads=2,
        attention_head_dim=12,
        in_channels=36,
        out_channels=16,
        text_dim=32,
        freq_dim=256,
        ffn_dim=32,
        num_layers=2,
        cross_attn_norm=True,
        qk_norm="rms_norm_across_heads",
        rope_max_seq_len=32,
    )
    config.update(overrides)
    return WanTransformer3DModel(**config)


def _wan_scheduler() -> Any:
    from diffusers import UniPCMultistepScheduler

    return UniPCMultistepScheduler(
        prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0
    )


def _wan() -> Any:
    """Wan 2.1 I2V 14B layout: CLIP vision encoder feeding `image_dim` tokens."""
    import torch
    from diffusers import WanImageToVideoPipeline
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(0)
    image_encoder = CLIPVisionModel(
        CLIPVisionConfig(
            hidden_size=8,
            projection_dim=8,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=32,
            intermediate_size=16,
            patch_size=4,
        )
    ).eval()
    return WanImageToVideoPipeline(
        tokenizer=word_tokenizer(),
        text_encoder=build_text_encoder(umt5=True),
        vae=_wan_vae(),
        scheduler=_wan_scheduler(),
        image_processor=CLIPImageProcessor(crop_size=32, size=32),
        image_encoder=image_encoder,
        transformer=_wan_transformer(image_dim=8),
    )


def _wan_a14b() -> Any:
    """Wan 2.2 I2V A14B layout: a high-noise and a low-noise expert switched at boundary_ratio,
    no CLIP image encoder (the photo only enters through the conditioning latents)."""
    from diffusers import WanImageToVideoPipeline

    return WanImageToVideoPipeline(
        tokenizer=word_tokenizer(),
        text_encoder=build_text_encoder(umt5=True),
        vae=_wan_vae(),
        scheduler=_wan_scheduler(),
        transformer=_wan_transformer(),
        transformer_2=_wan_transformer(),
        boundary_ratio=0.9,
    )


def _wan_ti2v() -> Any:
    """Wan 2.2 TI2V-5B layout: 16x VAE with 48 latent channels, expand_timesteps, no image
    encoder. Saved as `WanPipeline`, the class name the hub repo's model_index.json carries."""
    from diffusers import WanPipeline

    vae = _wan_vae(
        z_dim=48,
        in_channels=12,
        out_channels=12,
        is_residual=True,
        patch_size=2,
        latents_mean=[0.0] * 48,
        latents_std=[1.0] * 48,
        scale_factor_spatial=16,
        scale_factor_temporal=4,
    )
    return WanPipeline(
        tokenizer=word_tokenizer(),
        text_encoder=build_text_encoder(umt5=True),
        vae=vae,
        scheduler=_wan_scheduler(),
        transformer=_wan_transformer(in_channels=48, out_channels=48),
        expand_timesteps=True,
    )


def _svd() -> Any:
    import torch
    from diffusers import (
        AutoencoderKLTemporalDecoder,
        EulerDiscreteScheduler,
        StableVideoDiffusionPipeline,
        UNetSpatioTemporalConditionModel,
    )
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        CLIPVisionModelWithProjection,
    )

    torch.manual_seed(0)
    unet = UNetSpatioTemporalConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=32,
        in_channels=8,
        out_channels=4,
        down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
        up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
        cross_attention_dim=16,
        num_attention_heads=2,
        projection_class_embeddings_input_dim=48,
        addition_time_embed_dim=16,
    )
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        interpolation_type="linear",
        num_train_timesteps=1000,
        prediction_type="v_prediction",
        sigma_max=700.0,
        sigma_min=0.002,
        steps_offset=1,
        timestep_spacing="leading",
        timestep_type="continuous",
        trained_betas=None,
        use_karras_sigmas=True,
    )
    torch.manual_seed(0)
    vae = AutoencoderKLTemporalDecoder(
        block_out_channels=[32, 64],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
        latent_channels=4,
        layers_per_block=1,
    )
    torch.manual_seed(0)
    image_encoder = CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            hidden_size=16,
            projection_dim=16,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=224,  # SVD resizes its conditioning image to 224 itself
            intermediate_size=16,
            patch_size=28,
        )
    ).eval()
    return StableVideoDiffusionPipeline(
        vae=vae,
        image_encoder=image_encoder,
        unet=unet,
        scheduler=scheduler,
        feature_extractor=CLIPImageProcessor(crop_size=224, size=224),
    )


def _cogvideox() -> Any:
    """CogVideoX-5B-I2V layout: learned positional embeddings, so one fixed size (32x32)."""
    import torch
    from diffusers import (
        AutoencoderKLCogVideoX,
        CogVideoXDPMScheduler,
        CogVideoXImageToVideoPipeline,
        CogVideoXTransformer3DModel,
    )

    torch.manual_seed(0)
    transformer = CogVideoXTransformer3DModel(
        num_attention_heads=2,
        attention_head_dim=16,
        in_channels=8,
        out_channels=4,
        time_embed_dim=2,
        text_embed_dim=32,
        num_layers=2,
        sample_width=4,  # latent 4 -> 32 px
        sample_height=4,
        sample_frames=49,
        patch_size=2,
        temporal_compression_ratio=4,
        max_text_seq_length=226,
        use_rotary_positional_embeddings=True,
        use_learned_positional_embeddings=True,
    )
    torch.manual_seed(0)
    vae = AutoencoderKLCogVideoX(
        in_channels=3,
        out_channels=3,
        down_block_types=("CogVideoXDownBlock3D",) * 4,
        up_block_types=("CogVideoXUpBlock3D",) * 4,
        block_out_channels=(8, 8, 8, 8),
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=2,
        temporal_compression_ratio=4,
    )
    return CogVideoXImageToVideoPipeline(
        tokenizer=word_tokenizer(model_max_length=226),
        text_encoder=build_text_encoder(),
        vae=vae,
        transformer=transformer,
        scheduler=CogVideoXDPMScheduler(
            beta_schedule="scaled_linear",
            prediction_type="v_prediction",
            timestep_spacing="trailing",
            rescale_betas_zero_snr=True,
        ),
    )


BUILDERS: dict[str, Callable[[], Any]] = {
    "ltx": _ltx,
    "ltx2": _ltx2,
    "wan": _wan,
    "wan_a14b": _wan_a14b,
    "wan_ti2v": _wan_ti2v,
    "svd": _svd,
    "cogvideox": _cogvideox,
}

_BUILT: dict[str, Path] = {}


def build(kind: str, directory: str | os.PathLike[str]) -> Path:
    """Build the tiny `kind` pipeline and `save_pretrained` it into `directory`.

    ``ltx_i2v``: an LTX 0.9.x-style directory, saved as ``LTXImageToVideoPipeline`` with a
    timestep-conditioned VAE (the one that asks the pipeline for noise at decode)."""
    directory = Path(directory)
    if kind == "ltx_i2v":
        _ltx(timestep_conditioning=True).save_pretrained(directory)
        index = json.loads((directory / "model_index.json").read_text())
        index["_class_name"] = "LTXImageToVideoPipeline"
        (directory / "model_index.json").write_text(json.dumps(index, indent=2))
        return directory
    pipe = BUILDERS[kind]()
    pipe.save_pretrained(directory)
    return directory


def tiny_model_dir(kind: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The directory of the tiny `kind` pipeline, built on first use in this process."""
    if kind not in _BUILT or not (_BUILT[kind] / "model_index.json").is_file():
        _BUILT[kind] = build(kind, tmp_path_factory.mktemp(f"tiny-{kind}"))
    return _BUILT[kind]


@pytest.fixture(scope="session")
def tiny_ltx_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model_dir("ltx", tmp_path_factory)


@pytest.fixture(scope="session")
def tiny_ltx2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model_dir("ltx2", tmp_path_factory)


@pytest.fixture(scope="session")
def tiny_wan_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model_dir("wan", tmp_path_factory)


@pytest.fixture(scope="session")
def tiny_wan_a14b_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model_dir("wan_a14b", tmp_path_factory)


@pytest.fixture(scope="session")
def tiny_wan_ti2v_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model_dir("wan_ti2v", tmp_path_factory)


@pytest.fixture(scope="session")
def tiny_svd_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model_dir("svd", tmp_path_factory)


@pytest.fixture(scope="session")
def tiny_cogvideox_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model_dir("cogvideox", tmp_path_factory)


@pytest.fixture(scope="session")
def tiny_model_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """All tiny pipelines by kind."""
    return {kind: tiny_model_dir(kind, tmp_path_factory) for kind in KINDS}


# --- LoRAs in the published layouts --------------------------------------------------------


def write_wan_lora(path: str | os.PathLike[str], *, seed: int, dim: int = 24, ffn_dim: int = 32,
                   layers: int = 2, rank: int = 4, scale: float = 0.5) -> Path:
    """A random LoRA for the tiny Wan transformer in the key layout of lightx2v's
    Wan2.2-Lightning files (and most ComfyUI Wan LoRAs): ``diffusion_model.blocks.N.
    {self_attn,cross_attn}.{q,k,v,o}`` and ``ffn.{0,2}``, each a ``lora_down``/``lora_up``
    pair with an ``alpha``. diffusers converts this layout on load."""
    import torch
    from safetensors.torch import save_file

    generator = torch.Generator().manual_seed(seed)
    tensors: dict[str, Any] = {}

    def pair(key: str, fan_in: int, fan_out: int) -> None:
        prefix = f"diffusion_model.{key}"
        tensors[f"{prefix}.lora_down.weight"] = torch.randn(rank, fan_in, generator=generator) * scale
        tensors[f"{prefix}.lora_up.weight"] = torch.randn(fan_out, rank, generator=generator) * scale
        tensors[f"{prefix}.alpha"] = torch.tensor(float(rank))

    for block in range(layers):
        for attention in ("self_attn", "cross_attn"):
            for projection in "qkvo":
                pair(f"blocks.{block}.{attention}.{projection}", dim, dim)
        pair(f"blocks.{block}.ffn.0", dim, ffn_dim)
        pair(f"blocks.{block}.ffn.2", ffn_dim, dim)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path))
    return path


# --- single-file checkpoints in the original layout -----------------------------------------

_VAE_TOKENS = (("resnets", "res_blocks"), ("conv_shortcut.conv", "conv_shortcut"))
_VAE_BLOCK = r"(encoder|decoder)\.(down_blocks\.\d+(?:\.downsamplers\.0|\.conv_out)?|up_blocks\.\d+(?:\.upsamplers\.0|\.conv_in)?|mid_block)\.(.*)"


def write_ltx_single_file(model_dir: str | os.PathLike[str], path: str | os.PathLike[str]) -> Path:
    """The transformer and VAE of a tiny LTX directory as one .safetensors in LTX-Video's own
    layout (``model.diffusion_model.*`` and ``vae.*``, original block numbering), as Lightricks
    publishes ``ltxv-*.safetensors``. The VAE must be timestep-conditioned (the 0.9.1+ layout).

    Each original key is the one that diffusers' own conversion maps back to the diffusers key
    (checked for the whole file before it is written), so the file is what diffusers expects."""
    import re

    from diffusers.loaders.single_file_utils import (
        convert_ltx_transformer_checkpoint_to_diffusers,
        convert_ltx_vae_checkpoint_to_diffusers,
    )
    from safetensors.torch import load_file, save_file

    model_dir = Path(model_dir)
    transformer = load_file(str(next((model_dir / "transformer").glob("*.safetensors"))))
    vae = load_file(str(next((model_dir / "vae").glob("*.safetensors"))))
    renames = (("proj_in", "patchify_proj"), ("time_embed", "adaln_single"), ("norm_q", "q_norm"), ("norm_k", "k_norm"))
    original: dict[str, Any] = {}
    for key, tensor in transformer.items():
        for new, old in renames:
            key = key.replace(new, old)
        original[f"model.diffusion_model.{key}"] = tensor

    fixed = {  # the keys diffusers reads to tell the VAE's version
        "vae.encoder.conv_out.conv.weight": vae["encoder.conv_out.conv.weight"],
        "vae.decoder.last_time_embedder.timestep_embedder.linear_1.weight":
            vae["decoder.time_embedder.timestep_embedder.linear_1.weight"],
    }
    baseline = set(convert_ltx_vae_checkpoint_to_diffusers(dict(fixed)))

    def converts_to(candidate: str, tensor: Any) -> set[str]:
        return set(convert_ltx_vae_checkpoint_to_diffusers({**fixed, candidate: tensor})) - baseline

    def candidates(key: str) -> set[str]:
        found = {key}
        if match := re.match(_VAE_BLOCK, key):
            side, _, rest = match.groups()
            kind = "down_blocks" if side == "encoder" else "up_blocks"
            found |= {f"{side}.{kind}.{j}.{rest}" for j in range(10)}
        for new, old in (*_VAE_TOKENS, ("time_embedder", "last_time_embedder"), ("scale_shift_table", "last_scale_shift_table")):
            found |= {c.replace(new, old) for c in found}
        names = {"latents_mean": "per_channel_statistics.mean-of-means",
                 "latents_std": "per_channel_statistics.std-of-means"}
        return found | ({names[key]} if key in names else set())

    def published(candidate: str) -> tuple[int, list[int]]:
        """Among keys that convert alike, LTX's own: res_blocks, "last_" only on the decoder's
        own embedder and table, the lowest original block number."""
        own = sum(token in candidate for token in ("res_blocks", "per_channel", "conv_shortcut."))
        top = candidate.startswith(("decoder.last_time_embedder.", "decoder.last_scale_shift_table"))
        inner_last = candidate.count("last_") - top
        return (-own - 2 * top + inner_last, [int(n) for n in re.findall(r"_blocks\.(\d+)", candidate)])

    for key, tensor in vae.items():
        if f"vae.{key}" in fixed or key == "decoder.time_embedder.timestep_embedder.linear_1.weight":
            continue
        hits = [c for c in candidates(key) if converts_to(f"vae.{c}", tensor) == {key}]
        assert hits, f"no original key converts to {key}"
        original[f"vae.{min(hits, key=published)}"] = tensor
    original.update(fixed)

    assert set(convert_ltx_vae_checkpoint_to_diffusers(dict(original))) == set(vae)
    assert set(convert_ltx_transformer_checkpoint_to_diffusers(dict(original))) == set(transformer)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(original, str(path))
    return path


def hub_snapshot(cache: Path, repo_id: str) -> Path:
    """The snapshot folder of `repo_id` in a hub cache laid out as huggingface-cli leaves it
    (refs/main naming one revision); put files there to stand in for a download."""
    revision = "0" * 40
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(revision)
    return repo / "snapshots" / revision


# --- GGUF-quantized transformers in the original layout --------------------------------------

_WAN_ORIGINAL_NAMES = (  # diffusers -> Wan's own names, the inverse of diffusers' conversion
    ("condition_embedder.time_embedder.linear_1.", "time_embedding.0."),
    ("condition_embedder.time_embedder.linear_2.", "time_embedding.2."),
    ("condition_embedder.text_embedder.linear_1.", "text_embedding.0."),
    ("condition_embedder.text_embedder.linear_2.", "text_embedding.2."),
    ("condition_embedder.time_proj.", "time_projection.1."),
    ("condition_embedder.image_embedder.norm1.", "img_emb.proj.0."),
    ("condition_embedder.image_embedder.ff.net.0.proj.", "img_emb.proj.1."),
    ("condition_embedder.image_embedder.ff.net.2.", "img_emb.proj.3."),
    ("condition_embedder.image_embedder.norm2.", "img_emb.proj.4."),
    (".attn1.", ".self_attn."),
    (".attn2.", ".cross_attn."),
    (".to_out.0.", ".o."),
    (".to_q.", ".q."),
    (".to_k.", ".k."),
    (".to_v.", ".v."),
    (".add_k_proj.", ".k_img."),
    (".add_v_proj.", ".v_img."),
    (".norm_added_k.", ".norm_k_img."),
    (".ffn.net.0.proj.", ".ffn.0."),
    (".ffn.net.2.", ".ffn.2."),
    (".norm2.", ".norm3."),  # diffusers swaps Wan's norm2 and norm3 (the cross-attention norm)
)


def wan_original_key(key: str) -> str:
    """The key of Wan's own checkpoints (and of the published GGUFs) for a diffusers key of
    `WanTransformer3DModel`."""
    import re

    if key == "scale_shift_table":
        return "head.modulation"
    if key.startswith("proj_out."):
        return "head.head." + key.removeprefix("proj_out.")
    key = re.sub(r"^(blocks\.\d+)\.scale_shift_table$", r"\1.modulation", key)
    for new, old in _WAN_ORIGINAL_NAMES:
        key = key.replace(new, old)
    return key


def write_gguf(tensors: dict[str, Any], path: str | os.PathLike[str], *, arch: str,
               qtype: str = "Q8_0", keep_f32: tuple[str, ...] = ()) -> Path:
    """`tensors` (name -> torch tensor) as a GGUF file laid out as city96's ComfyUI-GGUF tools
    and llama.cpp's quantizer leave the published diffusion GGUFs: ``general.architecture``
    `arch`, 2-D weights in `qtype` when their rows fill whole blocks (32 values for Q8_0/Q4_0,
    256 for K-quants) and F16 when not, 1-D tensors, the names containing a `keep_f32` string
    and tensors of more than 2 dimensions (Wan's 5-D patch embedding) in F32.

    Unlike the published conversion there is no small-tensor threshold, so a tiny model's
    weights are really quantized. gguf-py can write F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0
    (not the K-quants, which only llama.cpp's C quantizer writes)."""
    import gguf
    import torch

    kind = gguf.GGMLQuantizationType[qtype]
    block = gguf.GGML_QUANT_SIZES[kind][0]
    writer = gguf.GGUFWriter(path=None, arch=arch)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    if (file_type := getattr(gguf.LlamaFileType, f"MOSTLY_{qtype}", None)) is not None:
        writer.add_file_type(file_type)
    for name, tensor in tensors.items():
        data = tensor.detach().to(torch.float32).contiguous().numpy()
        if data.ndim != 2 or any(keep in name for keep in keep_f32):
            stored = gguf.GGMLQuantizationType.F32
        elif data.shape[-1] % block == 0:
            stored = kind
        else:
            stored = gguf.GGMLQuantizationType.F16
        writer.add_tensor(name, gguf.quants.quantize(data, stored), raw_dtype=stored)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer.write_header_to_file(path=path)
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def write_wan_gguf(transformer: Any, path: str | os.PathLike[str], *, qtype: str = "Q8_0") -> Path:
    """A diffusers `WanTransformer3DModel` as a GGUF in Wan's original key layout, as QuantStack
    publishes the Wan 2.2 experts (``blocks.N.self_attn.q.weight``, ``head.modulation``...;
    ``.modulation`` kept in F32 as ComfyUI-GGUF does). Every key is checked to convert back to
    the diffusers key through diffusers' own conversion before the file is written."""
    from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers

    state = transformer.state_dict()
    original = {wan_original_key(key): tensor for key, tensor in state.items()}
    back = convert_wan_transformer_to_diffusers(dict(original))
    assert back.keys() == state.keys(), sorted(set(back) ^ set(state))
    assert all(back[key] is state[key] for key in state)
    return write_gguf(original, path, arch="wan", qtype=qtype, keep_f32=(".modulation",))


def write_ltx_gguf(transformer: Any, path: str | os.PathLike[str], *, qtype: str = "Q8_0") -> Path:
    """A diffusers `LTXVideoTransformer3DModel` as a GGUF in LTX-Video's own key layout without
    the ``model.diffusion_model.`` prefix (``patchify_proj``, ``adaln_single``, ``q_norm``), as
    city96 publishes LTX-Video GGUFs; ``scale_shift_table`` kept in F32."""
    from diffusers.loaders.single_file_utils import (
        convert_ltx_transformer_checkpoint_to_diffusers,
    )

    renames = (("proj_in", "patchify_proj"), ("time_embed", "adaln_single"),
               ("norm_q", "q_norm"), ("norm_k", "k_norm"))
    state = transformer.state_dict()
    original: dict[str, Any] = {}
    for key, tensor in state.items():
        for new, old in renames:
            key = key.replace(new, old)
        original[key] = tensor
    assert convert_ltx_transformer_checkpoint_to_diffusers(dict(original)).keys() == state.keys()
    return write_gguf(original, path, arch="ltxv", qtype=qtype, keep_f32=("scale_shift_table",))


# --- LTX-Video's spatial latent upsampler, as Lightricks publishes it ------------------------


def ltx_latent_upsampler(in_channels: int = 8, *, seed: int = 0) -> Any:
    """A tiny ``LTXLatentUpsamplerModel`` (seeded) for the tiny LTX's 8-channel latents: the
    published architecture (3-D convolutions, GroupNorm, a 2× spatial pixel shuffle) with 32
    middle channels (GroupNorm's 32 groups need that many) and one residual block per stage."""
    import torch
    from diffusers.pipelines.ltx.modeling_latent_upsampler import (
        LTXLatentUpsamplerModel,
    )

    torch.manual_seed(seed)
    return LTXLatentUpsamplerModel(
        in_channels=in_channels, mid_channels=32, num_blocks_per_stage=1, dims=3,
        spatial_upsample=True, temporal_upsample=False,
    ).eval()


def write_ltx_spatial_upscaler(directory: str | os.PathLike[str], *, seed: int = 0) -> Path:
    """The tiny upsampler in the layout of ``Lightricks/ltxv-spatial-upscaler-0.9.7``: an
    ``LTXLatentUpsamplePipeline`` saved with ``save_pretrained`` (model_index.json, a
    ``latent_upsampler`` folder with config.json and diffusion_pytorch_model.safetensors, and
    the ``vae`` folder the repo carries beside it)."""
    from diffusers import LTXLatentUpsamplePipeline

    directory = Path(directory)
    vae = _ltx().vae
    LTXLatentUpsamplePipeline(vae=vae, latent_upsampler=ltx_latent_upsampler(seed=seed)).save_pretrained(directory)
    return directory
