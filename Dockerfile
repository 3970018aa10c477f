# animate-bot on a CUDA machine. Build: docker build -t animate-bot .
# Run:   docker compose up -d   (see compose.yaml: GPU reservation and volumes)
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    HF_HOME=/hf-cache \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility,video \
    TORCHINDUCTOR_CACHE_DIR=/hf-cache/inductor \
    TRITON_CACHE_DIR=/hf-cache/triton \
    DATABASE_PATH=/data/animate-bot.sqlite3 \
    OUTPUT_DIR=/data/outputs \
    METRICS_PORT=9464 \
    UNHEALTHY_EXIT_MINUTES=10

# gcc, libc6-dev, python3-dev: with COMPILE=true Triton builds a small C launcher at run time.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates tini \
    gcc libc6-dev python3-dev \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m venv /opt/venv

# torch with CUDA 12.8 kernels first (its own index; torchvision from the same build, for
# spandrel's upscaler), then the project and the rest.
RUN pip install --upgrade pip \
 && pip install torch torchvision --index-url https://download.pytorch.org/whl/cu128

WORKDIR /app
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY contract ./contract
COPY jobs ./jobs
COPY pipeline ./pipeline
RUN pip install ".[upscale]"

RUN useradd --create-home --uid 10001 animate \
 && mkdir -p /data /hf-cache \
 && chown animate:animate /data /hf-cache
USER animate
VOLUME ["/data", "/hf-cache"]

# 200 only while the gateway, the database and a worker work (bot/health.py). `docker ps`
# shows the verdict; after UNHEALTHY_EXIT_MINUTES of failures the bot exits by itself (code 3)
# and the restart policy brings it back. start-period: a first start downloads the model.
HEALTHCHECK --interval=30s --timeout=15s --start-period=10m --retries=3 \
  CMD ["python", "-c", "import os, sys, urllib.request; url = 'http://127.0.0.1:%s/healthz' % os.environ['METRICS_PORT']; sys.exit(urllib.request.urlopen(url, timeout=10).status != 200)"]

ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["python", "-m", "bot"]
