"""Discord side of animate-bot: settings, credits ledger and job queue, scheduler, cogs.

Never imports torch or diffusers: the model runs in pipeline workers.
"""
