"""Loss functions of sisu: pure tensor functions without torch.distributed, easy to unit-test.

- `sft_loss`: summed next-token cross-entropy and the target-token count.
- `sequence_logps` / `token_logps`: completion log-probabilities for DPO.
- `dpo_loss`: sigmoid, hinge, ipo and robust DPO against a frozen reference.
- `neftune_noise`: NEFTune embedding noise with real per-sample (or per-document) lengths.
"""

from losses.dpo import dpo_loss
from losses.neftune import neftune_noise
from losses.sft import sequence_logps, sft_loss, token_logps

__all__ = ["dpo_loss", "neftune_noise", "sequence_logps", "sft_loss", "token_logps"]
