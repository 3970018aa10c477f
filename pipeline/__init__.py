"""GPU side of animate-bot: photo intake, image-to-video backends, MP4 encoding, workers.

Importing this package is cheap: torch and diffusers are imported only by the modules that
run a model. It shares plain data with the job layer only through :mod:`contract`.
"""
