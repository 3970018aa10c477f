"""Model presets: which checkpoint each name means and how to drive it well.

Plain data and arithmetic only (no torch): the bot imports this to list models, price jobs and
show members what a model can do, on machines without a GPU stack.

Repo ids and settings were checked against the diffusers documentation and pipeline sources
(diffusers 0.42); each preset's ``source`` says where. A directory or hub id that is not a
preset gets the defaults of its family (``Family.default_preset``), refined by what the loaded
pipeline itself requires (VAE/patch multiples, frame rule, fixed sizes).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from contract import CAMERA_MOVES, CARDS, LoraSpec, ModelCard, ModelError

# Pipeline class in model_index.json -> family. Text-to-video classes are listed because the
# same checkpoints are loaded with the family's image-to-video class (see I2V_CLASS).
FAMILY_OF_CLASS: dict[str, str] = {
    "LTXPipeline": "ltx",
    "LTXImageToVideoPipeline": "ltx",
    "LTXConditionPipeline": "ltx",
    "WanPipeline": "wan",
    "WanImageToVideoPipeline": "wan",
    "StableVideoDiffusionPipeline": "svd",
    "CogVideoXImageToVideoPipeline": "cogvideox",
    "LTX2Pipeline": "ltx2",
    "LTX2ImageToVideoPipeline": "ltx2",
}

I2V_CLASS: dict[str, str] = {
    "LTXPipeline": "LTXConditionPipeline",
    # Its own call builds sigmas beside the distilled timesteps and draws decode noise with a
    # CPU generator on the GPU; the condition pipeline loads the same components and does neither.
    "LTXImageToVideoPipeline": "LTXConditionPipeline",
    "LTXConditionPipeline": "LTXConditionPipeline",
    "WanPipeline": "WanImageToVideoPipeline",
    "WanImageToVideoPipeline": "WanImageToVideoPipeline",
    "StableVideoDiffusionPipeline": "StableVideoDiffusionPipeline",
    "CogVideoXImageToVideoPipeline": "CogVideoXImageToVideoPipeline",
    "LTX2Pipeline": "LTX2ImageToVideoPipeline",
    "LTX2ImageToVideoPipeline": "LTX2ImageToVideoPipeline",
}
"""The image-to-video class used to load a checkpoint whose model_index names the key."""

WAN_NEGATIVE_PROMPT = (
    "Bright tones, overexposed, static, blurred details, subtitles, style, works, paintings, "
    "images, static, overall gray, worst quality, low quality, JPEG compression residue, ugly, "
    "incomplete, extra fingers, poorly drawn hands, poorly drawn faces, deformed, disfigured, "
    "misshapen limbs, fused fingers, still picture, messy background, three legs, many people "
    "in the background, walking backwards"
)
LTX_NEGATIVE_PROMPT = "worst quality, inconsistent motion, blurry, jittery, distorted"


@dataclass(frozen=True)
class GgufFiles:
    """A denoiser published as GGUF-quantized files in the original layout (community
    conversions of the same weights): per component, a file name with ``{quant}`` in it."""

    repo: str
    files: Mapping[str, str] = field(hash=False)
    quants: tuple[str, ...] = ("Q8_0", "Q5_K_M", "Q4_K_M")
    """Offered from the largest (closest to bf16) to the smallest."""

    def for_quant(self, quant: str) -> dict[str, tuple[str, str]]:
        """Component -> (repo, file) of the `quant` files."""
        return {name: (self.repo, pattern.format(quant=quant)) for name, pattern in self.files.items()}


@dataclass(frozen=True)
class LatentUpscale:
    """Upscale 2× inside an LTX-Video render: the clip is denoised at the base size, its latents
    are doubled by Lightricks' spatial latent upsampler (``LTXLatentUpsamplePipeline``), and a
    short second pass at twice the size re-noises and denoises them before the VAE decodes.

    The flow and numbers are diffusers' (docs api/pipelines/ltx_video.md, the 0.9.8 distilled
    example): ``adain_factor=1.0`` and ``tone_map_compression_ratio`` in the upsampler call,
    then ``LTXConditionPipeline`` with ``latents=`` on the distilled schedule 1000, 909, 725,
    421. The docs append a 0 and pass ``denoise_strength=0.999``; that runs the same three
    steps from sigma 0.909 plus one at sigma 0, where the Euler step is zero (tests check it),
    so here the 0 is left out and the strength is 3/4: one transformer pass fewer, the same
    latents. Lightricks' own multiscale config for 0.9.8 distilled runs the same second pass
    (timesteps 0.9094, 0.7250, 0.4219) with the same upsampler."""

    repo_id: str
    """A diffusers-format ``LTXLatentUpsamplePipeline`` repo; only its upsampler is used (the
    VAE is the loaded model's own)."""
    subfolder: str = "latent_upsampler"
    adain_factor: float = 1.0
    """Match the upsampled latents' per-channel statistics to the base render's (1: fully)."""
    tone_map_compression_ratio: float = 0.0
    timesteps: tuple[float, ...] = (1000, 909, 725, 421)
    denoise_strength: float = 0.75
    """Of the timesteps above, the second pass runs the last int(len × strength)."""
    weight_bytes: int = 505_002_496
    """The upsampler's weights as published (float32, 126.25 M parameters: in 128, mid 512
    channels, 4 + 4 residual blocks of 3-D convolutions); half that in bf16 on a GPU.
    Counted from the default LTXLatentUpsamplerModel config on `meta`; the hub lists 505 MB."""
    source: str = ""

    @property
    def files(self) -> tuple[str, str]:
        """The two files the loader reads (``LTXLatentUpsamplerModel.from_pretrained``)."""
        return (f"{self.subfolder}/config.json", f"{self.subfolder}/diffusion_pytorch_model.safetensors")

    @property
    def refine_steps(self) -> int:
        """Transformer passes of the second pass (LTXConditionPipeline.get_timesteps)."""
        count = len(self.timesteps)
        return min(int(count * self.denoise_strength), count)


LTX_SPATIAL_UPSCALER = LatentUpscale(
    repo_id="Lightricks/ltxv-spatial-upscaler-0.9.7",
    source=(
        "diffusers docs api/pipelines/ltx_video.md (LTXLatentUpsamplePipeline.from_pretrained("
        "'Lightricks/ltxv-spatial-upscaler-0.9.7', vae=pipeline.vae); 0.9.8 distilled: "
        "adain_factor 1.0, tone_map_compression_ratio 0.6, second pass timesteps 1000, 909, "
        "725, 421, 0 at denoise_strength 0.999); Lightricks/LTX-Video's "
        "ltxv-spatial-upscaler-0.9.8.safetensors is a copy of the 0.9.7 file (the commit says "
        "so, 505 MB), and configs/ltxv-{2b,13b}-0.9.8-distilled.yaml use it"
    ),
)
"""The one upsampler for LTX-Video 0.9.7/0.9.8 (2B and 13B share the 128-channel VAE)."""


@dataclass(frozen=True)
class Preset:
    """Everything needed to run one checkpoint well; how members see it is its :attr:`card`."""

    name: str
    family: str
    pipeline_class: str
    """The diffusers image-to-video class used to load and call it."""
    repo_id: str
    multiple: int
    """Width and height must be multiples of this."""
    fps: int
    frame_step: int
    """Frame counts are ``frame_step * k + 1`` (1: any count)."""
    default_frames: int
    min_frames: int
    max_frames: int
    steps: int
    guidance: float
    dtype: str
    """Weights dtype on CUDA ("bfloat16" or "float16"); CPU always runs float32."""
    source: str
    """Where the repo id and settings were verified."""
    buckets: tuple[tuple[int, int], ...] = ()
    """Supported (width, height) pairs; the photo picks the closest aspect ratio."""
    area: int | None = None
    """Pixel-area rule instead of buckets: width*height close to this, aspect from the photo."""
    negative_prompt: str = ""
    fp32_components: tuple[str, ...] = ()
    """Components kept in float32 on CUDA for quality (e.g. Wan's VAE), as the docs advise."""
    variant: str | None = None
    """Weight file variant to request from the hub repo (SVD ships "fp16")."""
    call_defaults: Mapping[str, Any] = field(default_factory=dict, hash=False)
    """Extra keyword arguments for the pipeline call (family-specific)."""
    default_timesteps: tuple[float, ...] = ()
    """Custom timesteps used when the step count is the preset's default (distilled LTX)."""
    default_sigmas: tuple[float, ...] = ()
    """Custom sigmas used when the step count is the preset's default (distilled LTX-2)."""
    loras: tuple[LoraSpec, ...] = ()
    """LoRAs fused into the weights at load (a distillation pair), before any speed-up."""
    scheduler: str | None = None
    """A diffusers scheduler class to use instead of the checkpoint's (None: keep it)."""
    scheduler_config: Mapping[str, Any] = field(default_factory=dict, hash=False)
    """Settings laid over the checkpoint's scheduler config (e.g. a distilled model's shift)."""
    configs: str | None = None
    """The folder under pipeline/configs/ holding this checkpoint's full-size component configs
    (what the memory planner's footprints were counted from)."""
    gguf: GgufFiles | None = None
    """GGUF-quantized denoiser files the memory planner may choose on small GPUs."""
    single_file: tuple[str, str] | None = None
    """(repo, file) of a checkpoint published as one .safetensors in the original layout: its
    transformer and VAE come from that file, everything else (text encoder, tokenizer,
    scheduler, and the two components' configs) from `repo_id`, a diffusers-format repo."""
    latent_upscale: LatentUpscale | None = None
    """Upscale 2× in the model's latent space when its upsampler is downloaded (LTX-Video);
    None: only the pixel upscaler (Real-ESRGAN) after the render. Not in :meth:`downloads`:
    it is a finish, fetched with ``python -m pipeline download ltx-upscale``."""

    def downloads(self) -> list[tuple[str, str | None]]:
        """What must be on this machine to run the preset: (repo, None) for a diffusers repo,
        (repo, file) for one file of a repo."""
        needed: list[tuple[str, str | None]] = [(self.repo_id, None)]
        if self.single_file:
            needed.append(self.single_file)
        needed += [(lora.source, lora.weight_name) for lora in self.loras]
        return needed

    @property
    def card(self) -> ModelCard:
        """What members are told about this model (label, lengths, what it accepts)."""
        return CARDS[self.name]

    @property
    def max_duration(self) -> float:
        return self.max_frames / self.fps

    def frames_for(
        self, duration: float, fps: int | None = None, *, frame_step: int | None = None
    ) -> int:
        """Frame count for `duration` seconds at `fps`, on the frame rule and within limits."""
        return frames_for(
            duration,
            fps or self.fps,
            frame_step=frame_step or self.frame_step,
            min_frames=self.min_frames,
            max_frames=self.max_frames,
        )


def frames_for(
    duration: float, fps: int, *, frame_step: int, min_frames: int, max_frames: int
) -> int:
    """Nearest count ``frame_step*k + 1`` to ``duration*fps``, clamped to [min, max] on the rule."""
    step = max(1, int(frame_step))
    lo = _snap_up(max(1, min_frames), step)
    hi = max(lo, _snap_down(max_frames, step))
    wanted = max(1.0, float(duration) * float(fps))
    k = round((wanted - 1) / step)
    return int(min(hi, max(lo, k * step + 1)))


def _snap_up(n: int, step: int) -> int:
    return ((n - 1 + step - 1) // step) * step + 1 if n > 1 else 1


def _snap_down(n: int, step: int) -> int:
    return ((n - 1) // step) * step + 1 if n > 1 else 1


_LTX_13B = Preset(
    name="ltx",
    family="ltx",
    pipeline_class="LTXConditionPipeline",
    repo_id="Lightricks/LTX-Video-0.9.8-13B-distilled",
    area=832 * 480,
    multiple=32,
    fps=24,
    frame_step=8,
    default_frames=73,
    min_frames=9,
    max_frames=257,
    steps=8,
    guidance=1.0,
    dtype="bfloat16",
    negative_prompt=LTX_NEGATIVE_PROMPT,
    call_defaults={
        "guidance_rescale": 0.7,
        "decode_timestep": 0.05,
        "decode_noise_scale": 0.025,
        "image_cond_noise_scale": 0.0,
    },
    default_timesteps=(1000, 993, 987, 981, 975, 909, 725, 0.03),
    configs="ltx-13b",
    latent_upscale=dataclasses.replace(LTX_SPATIAL_UPSCALER, tone_map_compression_ratio=0.6),
    source=(
        "diffusers docs api/pipelines/ltx_video.md (0.9.8 distilled with LTXConditionPipeline; "
        "guidance 1.0, 8 custom timesteps, decode_timestep 0.05, decode_noise_scale 0.025, "
        "image_cond_noise_scale 0.0, guidance_rescale 0.7, bf16, 480x832, fps 24; H,W ÷32, "
        "frames 8k+1 from pipeline_ltx_condition.py check_inputs and VAE ratios)"
    ),
)

_WAN_A14B = Preset(
    name="wan-14b",
    family="wan",
    pipeline_class="WanImageToVideoPipeline",
    repo_id="Wan-AI/Wan2.2-I2V-A14B-Diffusers",
    area=480 * 832,
    multiple=16,
    fps=16,
    frame_step=4,
    default_frames=81,
    min_frames=17,
    max_frames=81,
    steps=40,
    guidance=3.5,
    dtype="bfloat16",
    negative_prompt=WAN_NEGATIVE_PROMPT,
    fp32_components=("vae",),
    configs="wan-14b",
    gguf=GgufFiles(
        "QuantStack/Wan2.2-I2V-A14B-GGUF",
        {
            "transformer": "HighNoise/Wan2.2-I2V-A14B-HighNoise-{quant}.gguf",
            "transformer_2": "LowNoise/Wan2.2-I2V-A14B-LowNoise-{quant}.gguf",
        },
    ),
    source=(
        "diffusers docs api/pipelines/wan.md (Wan 2.2 I2V 14B = Wan-AI/Wan2.2-I2V-A14B-Diffusers; "
        "VAE in float32; frames 4k+1; max_area 480*832 and mod = vae 8 x patch 2 = 16 in the "
        "WanImageToVideoPipeline example); pipeline_wan_i2v.py (two experts, boundary_ratio; "
        "last_image conditions the last frame when there is no CLIP image encoder); Wan2.2 "
        "configs wan_i2v_A14B.py (40 steps, guidance 3.5/3.5) and shared_config.py (16 fps, 81 "
        "frames); 720p (1280x720 area) via --size"
    ),
)

PRESETS: dict[str, Preset] = {
    "ltx": _LTX_13B,
    "ltx-2b": dataclasses.replace(
        _LTX_13B,
        name="ltx-2b",
        repo_id="Lightricks/LTX-Video-0.9.5",
        single_file=("Lightricks/LTX-Video", "ltxv-2b-0.9.8-distilled.safetensors"),
        area=768 * 512,
        default_frames=121,
        configs="ltx-2b",
        # Lightricks' 2B 0.9.8 distilled config tone-maps nothing (its 13B config: 0.6).
        latent_upscale=LTX_SPATIAL_UPSCALER,
        source=(
            "Lightricks/LTX-Video ltxv-2b-0.9.8-distilled.safetensors (transformer + VAE in the "
            "original layout); diffusers single_file_utils.infer_diffusers_model_type maps a 2B "
            "checkpoint whose VAE encoder conv_out takes 2048 channels to ltx-video-0.9.5, whose "
            "default config repo Lightricks/LTX-Video-0.9.5 has the same 2B transformer and "
            "0.9.5/0.9.7 VAE configs (pipeline/configs/SOURCES.md checks both against the file's "
            "size), and it is passed explicitly; settings as the 13B distilled preset (8 "
            "timesteps, guidance 1), 768x512 and 121 frames as in the LTX-Video 2B distilled config"
        ),
    ),
    "ltx2": Preset(
        name="ltx2",
        family="ltx2",
        pipeline_class="LTX2ImageToVideoPipeline",
        repo_id="diffusers/LTX-2.3-Distilled-Diffusers",
        area=768 * 512,
        multiple=32,
        fps=24,
        frame_step=8,
        default_frames=121,
        min_frames=9,
        max_frames=241,
        steps=8,
        guidance=1.0,
        dtype="bfloat16",
        negative_prompt=LTX_NEGATIVE_PROMPT,
        # Distilled: one pass per step for each modality. CFG, spatio-temporal guidance and
        # modality isolation would each add a pass the distillation made unnecessary.
        call_defaults={
            "stg_scale": 0.0,
            "modality_scale": 1.0,
            "audio_guidance_scale": 1.0,
            "audio_stg_scale": 0.0,
            "audio_modality_scale": 1.0,
            "guidance_rescale": 0.0,
            "audio_guidance_rescale": 0.0,
        },
        default_sigmas=(1.0, 0.99375, 0.9875, 0.98125, 0.975, 0.909375, 0.725, 0.421875),
        configs="ltx2-distilled",
        source=(
            "diffusers pipeline_ltx2_image2video.py (LTX2ImageToVideoPipeline: Gemma 3 text "
            "encoder, connectors, video and audio VAEs, vocoder; frames 8k+1, H,W ÷32; "
            "768x512, 121 frames at 24 fps by default; CFG/STG/modality guidance off at "
            "guidance 1, stg 0, modality 1) and pipelines/ltx2/utils.py DISTILLED_SIGMA_VALUES "
            "(8 distilled sigmas); diffusers/LTX-2.3-Distilled-Diffusers (the distilled 22B "
            "checkpoint in diffusers format, saved as LTX2Pipeline)"
        ),
    ),
    "wan": Preset(
        name="wan",
        family="wan",
        pipeline_class="WanImageToVideoPipeline",
        repo_id="Wan-AI/Wan2.2-TI2V-5B-Diffusers",
        area=1280 * 704,
        multiple=32,
        fps=24,
        frame_step=4,
        default_frames=121,
        min_frames=17,
        max_frames=121,
        steps=50,
        guidance=5.0,
        dtype="bfloat16",
        negative_prompt=WAN_NEGATIVE_PROMPT,
        fp32_components=("vae",),
        configs="wan-5b",
        gguf=GgufFiles("QuantStack/Wan2.2-TI2V-5B-GGUF", {"transformer": "Wan2.2-TI2V-5B-{quant}.gguf"}),
        source=(
            "diffusers docs api/pipelines/wan.md (repo listed as Wan 2.2 TI2V 5B; VAE in float32; "
            "frames 4k+1); tests/pipelines/wan/test_wan_22_image_to_video.py (16x VAE, patch 2 -> "
            "H,W ÷32, expand_timesteps); Wan2.2 configs wan_ti2v_5B.py (24 fps, 121 frames, 50 "
            "steps, guidance 5.0; 720P = 1280x704)"
        ),
    ),
    "wan-14b": _WAN_A14B,
    "wan-14b-fast": dataclasses.replace(
        _WAN_A14B,
        name="wan-14b-fast",
        steps=4,
        guidance=1.0,
        call_defaults={"guidance_scale_2": 1.0},
        loras=(
            LoraSpec(
                "lightx2v/Wan2.2-Lightning",
                "Wan2.2-I2V-A14B-4steps-lora-rank64-Seko-V1/high_noise_model.safetensors",
                component="transformer",
            ),
            LoraSpec(
                "lightx2v/Wan2.2-Lightning",
                "Wan2.2-I2V-A14B-4steps-lora-rank64-Seko-V1/low_noise_model.safetensors",
                component="transformer_2",
            ),
        ),
        # Lightning was distilled with Euler steps on the timesteps 1000/750/500/250 shifted
        # by 5. UniPC's flow sigmas at shift 5 give 4 steps at t = 999, 937, 833, 625 (sigmas
        # 1.0, 0.9376, 0.8336, 0.6259: the shifted training steps), and at first order with
        # the corrector off each UniPC step is exactly an Euler step. The 0.9 boundary
        # (t = 900) gives the high-noise expert the first two and the low-noise expert the
        # last two. (diffusers' FlowMatchEuler spaces 4 steps as 1000, 910, 717, 24: wrong.)
        # tests/test_loras.py checks all of this with diffusers' own scheduler.
        scheduler="UniPCMultistepScheduler",
        scheduler_config={
            "prediction_type": "flow_prediction",
            "use_flow_sigmas": True,
            "flow_shift": 5.0,
            "solver_order": 1,
            "disable_corrector": list(range(200)),  # every step a request may ask for
        },
        source=(
            "lightx2v/Wan2.2-Lightning README (Wan2.2-I2V-A14B-4steps-lora-rank64-Seko-V1: "
            "high_noise_model -> high-noise expert, low_noise_model -> low-noise expert, 4 steps, "
            "no CFG, shift 5); lightx2v WanStepDistillScheduler (Euler on denoising_step_list "
            "1000/750/500/250 shifted by sample_shift); diffusers scheduling_unipc_multistep.py "
            "(use_flow_sigmas, disable_corrector) and WanLoraLoaderMixin "
            "(load_into_transformer_2) and pipeline_wan_i2v.py (boundary_ratio, guidance_scale_2; "
            "CFG off at guidance 1)"
        ),
    ),
    "svd": Preset(
        name="svd",
        family="svd",
        pipeline_class="StableVideoDiffusionPipeline",
        repo_id="stabilityai/stable-video-diffusion-img2vid-xt",
        buckets=((1024, 576), (576, 1024)),
        multiple=64,
        fps=7,
        frame_step=1,
        default_frames=25,
        min_frames=14,
        max_frames=25,
        steps=25,
        guidance=3.0,
        dtype="float16",
        variant="fp16",
        call_defaults={"min_guidance_scale": 1.0, "decode_chunk_size": 8},
        configs="svd-xt",
        source=(
            "diffusers docs using-diffusers/svd.md (svd-xt: 25 frames, 1024x576, fp16 variant, "
            "decode_chunk_size 8, export fps 7, motion_bucket_id/noise_aug_strength micro-"
            "conditioning, <8 GB with offload + chunking); pipeline defaults 25 steps, guidance 1->3"
        ),
    ),
    "cogvideox": Preset(
        name="cogvideox",
        family="cogvideox",
        pipeline_class="CogVideoXImageToVideoPipeline",
        repo_id="THUDM/CogVideoX-5b-I2V",
        buckets=((720, 480),),
        multiple=16,
        fps=8,
        frame_step=4,
        default_frames=49,
        min_frames=49,
        max_frames=49,
        steps=50,
        guidance=6.0,
        dtype="bfloat16",
        call_defaults={"use_dynamic_cfg": True},
        configs="cogvideox-5b-i2v",
        source=(
            "diffusers pipeline_cogvideox_image2video.py example (THUDM/CogVideoX-5b-I2V, bf16, "
            "use_dynamic_cfg, export fps 8) and defaults (49 frames, 50 steps, guidance 6); learned "
            "positional embeddings fix the size to 720x480 (models/embeddings.py)"
        ),
    ),
}

AUTO_ORDER: tuple[str, ...] = ("ltx-2b", "ltx")
"""What `auto` tries on a CUDA GPU, fastest first (python -m bench flops: 0.23 PFLOP of
denoising per clip for ltx-2b; the 13B runs the same 8 steps with about 13 B parameters
against 1.9 B)."""

def get_preset(name: str) -> Preset:
    """The preset called `name`, or a ModelError listing the valid names."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ModelError(
            f"Unknown model {name!r}; choose one of: {', '.join(['auto', 'camera', *PRESETS])}, "
            "or pass a local diffusers model directory or a Hugging Face repo id."
        ) from None


# --- camera moves and motion strength -------------------------------------------------------

CAMERA_PHRASES: dict[str, str] = {
    "static": "the camera holds almost still, with a barely perceptible push-in",
    "zoom_in": "the camera {adverb} zooms in",
    "zoom_out": "the camera {adverb} zooms out",
    "pan_left": "the camera {adverb} pans to the left",
    "pan_right": "the camera {adverb} pans to the right",
    "tilt_up": "the camera {adverb} tilts up",
    "tilt_down": "the camera {adverb} tilts down",
    "orbit": "the camera {adverb} orbits around the subject in a gentle arc with a slight turn",
}
assert set(CAMERA_PHRASES) == set(CAMERA_MOVES)

_ADVERBS = (
    "very slowly",
    "very slowly",
    "slowly",
    "slowly",
    "smoothly",
    "smoothly",
    "steadily",
    "steadily",
    "quickly",
    "quickly",
)
_MOTION = (
    "Barely any motion, almost a still photo.",
    "Subtle, gentle motion.",
    "Gentle, natural motion.",
    "Soft, natural motion.",
    "Natural motion.",
    "Natural, fluid motion.",
    "Lively motion.",
    "Lively, expressive motion.",
    "Energetic, dynamic motion.",
    "Very energetic, dynamic motion.",
)
DEFAULT_SUBJECT = "The scene in the photo comes to life"


def camera_phrase(camera: str, motion: int) -> str:
    """A sentence describing the camera move at this motion strength (1-10)."""
    strength = min(10, max(1, int(motion)))
    template = CAMERA_PHRASES.get(camera, CAMERA_PHRASES["static"])
    sentence = template.format(adverb=_ADVERBS[strength - 1])
    return sentence[0].upper() + sentence[1:] + "."


def motion_prompt(prompt: str, camera: str, motion: int) -> str:
    """The member's prompt with the camera move and motion strength phrased after it.

    Text-conditioned video models follow camera language in the prompt far better than any
    numeric knob, so camera preset and motion strength become words.
    """
    base = " ".join(prompt.split()) or DEFAULT_SUBJECT
    if base[-1] not in ".!?":
        base += "."
    strength = min(10, max(1, int(motion)))
    return f"{base} {camera_phrase(camera, strength)} {_MOTION[strength - 1]}"


def svd_conditioning(motion: int) -> dict[str, float | int]:
    """SVD micro-conditioning from motion strength 1-10.

    5 gives the pipeline defaults (motion_bucket_id 127, noise_aug_strength 0.02); 10 goes to
    230 / 0.1 (the docs' "more motion" example uses 180 / 0.1); 1 gives 25 / 0.02.
    """
    m = min(10, max(1, int(motion)))
    if m <= 5:
        bucket = round(25 + (m - 1) * (127 - 25) / 4)
        noise = 0.02
    else:
        bucket = round(127 + (m - 5) * (230 - 127) / 5)
        noise = round(0.02 + (m - 5) * 0.016, 3)
    return {"motion_bucket_id": int(bucket), "noise_aug_strength": float(noise)}
