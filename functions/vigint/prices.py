"""Published prices the console's usage page estimates costs with (USD), from one place.

Every figure is the one ``docs/deploying.md`` §4.2 ("Published prices used") uses for the cost model, read there
on 2026-11-22 from stored copies of the pages named next to each constant. They are list prices before free
tiers and taxes; change them here (and in ``docs/deploying.md``) when the pages change.

The tenant's usage counters (``vigint.usage``) keep one ``gemini_tokens`` number per month
(``usage_metadata.total_token_count``: input and output together), so Gemini is priced at a blended rate: the
input and output shares of the cost model's event (5,818 input and 600 output tokens of 6,418, ``docs/deploying.md``
§4.1; the output share is an assumption there).
"""

from __future__ import annotations

PRICES_READ_ON = "2026-11-22"

# https://ai.google.dev/gemini-api/docs/pricing (Gemini 2.5 Flash, paid tier, text/image/video input), as
# transcribed in github.com/api-evangelist/gemini plans/gemini-plans-pricing.yml (page read 2026-09-20).
GEMINI_INPUT_USD_PER_MILLION = 0.30
# Gemini 2.5 Flash output, thinking tokens included: deploybase.ai/articles/gemini-2.5-pricing (2026-01-08;
# a secondary source, the transcription above lacks the row).
GEMINI_OUTPUT_USD_PER_MILLION = 2.50
# Shares of the cost model's event (docs/deploying.md §4.1): 5,818 input + 600 output tokens.
GEMINI_INPUT_TOKENS_PER_EVENT = 5818
GEMINI_OUTPUT_TOKENS_PER_EVENT = 600
# https://cloud.google.com/storage/pricing, Standard storage, single region (us-central1 row; europe-west1 is
# assumed the same), $0.000027397 per GiB-hour, about $0.020 per GiB-month.
STORAGE_USD_PER_GIB_MONTH = 0.020

SOURCES = {
    "gemini": "ai.google.dev/gemini-api/docs/pricing (Gemini 2.5 Flash), read " + PRICES_READ_ON,
    "storage": "cloud.google.com/storage/pricing (Standard, single region), read " + PRICES_READ_ON,
}

GIB = 1024 ** 3


def gemini_usd_per_million_blended() -> float:
    """USD per million Gemini tokens when input and output are counted together (see the module docstring)."""
    total = GEMINI_INPUT_TOKENS_PER_EVENT + GEMINI_OUTPUT_TOKENS_PER_EVENT
    return (GEMINI_INPUT_TOKENS_PER_EVENT * GEMINI_INPUT_USD_PER_MILLION
            + GEMINI_OUTPUT_TOKENS_PER_EVENT * GEMINI_OUTPUT_USD_PER_MILLION) / total


def gemini_usd(tokens: int) -> float:
    """Estimated USD of ``tokens`` Gemini tokens (input and output together, blended rate)."""
    return max(0, int(tokens)) / 1_000_000 * gemini_usd_per_million_blended()


def storage_usd_per_month(nbytes: int) -> float:
    """USD a month of keeping ``nbytes`` bytes in Standard storage (clips of the month kept for a month: the
    default 30-day retention)."""
    return max(0, int(nbytes)) / GIB * STORAGE_USD_PER_GIB_MONTH
