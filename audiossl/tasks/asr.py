"""CTC fine-tuning: batches of (inputs, token ids) → CTC loss; validation adds CER and WER."""
from __future__ import annotations

from torch import nn

from audiossl.data.dataset import Batch
from audiossl.models.ctc.model import CtcModel, ctc_loss
from audiossl.tasks.base import StepOutput, Task
from audiossl.text.scoring import error_rates


class CtcTask(Task):
    """Loss per target token; the encoder is frozen for ``freeze_encoder_updates`` first updates."""

    family = "ctc"
    find_unused_parameters = True  # a frozen encoder gets no gradient

    def before_update(self, model: CtcModel, update: int) -> None:
        model.encoder_frozen = update < model.config.freeze_encoder_updates

    def train_step(self, model: nn.Module, batch: Batch, generator) -> StepOutput:
        log_probs, frames = model(batch.inputs, batch.lengths, generator)
        loss_sum = ctc_loss(log_probs, frames, batch.targets, batch.target_lengths)
        tokens = float(batch.target_lengths.sum())
        return StepOutput(loss_sum / max(tokens, 1.0), {"loss": float(loss_sum.detach()), "tokens": tokens,
                                                         "utterances": float(batch.size)})

    def valid_step(self, model: CtcModel, batch: Batch, generator) -> dict[str, float]:
        log_probs, frames = model(batch.inputs, batch.lengths)
        loss_sum = ctc_loss(log_probs, frames, batch.targets, batch.target_lengths)
        hyps = dict(zip(batch.utterances, model.decode(log_probs, frames)))
        refs = {utt: model.tokenizer.decode(t[:n].tolist())
                for utt, t, n in zip(batch.utterances, batch.targets, batch.target_lengths)}
        rates = error_rates(refs, hyps)
        return {"loss": float(loss_sum), "tokens": float(batch.target_lengths.sum()),
                "utterances": float(batch.size), "word_errors": rates.wer * rates.num_words,
                "words": float(rates.num_words), "char_errors": rates.cer * rates.num_chars,
                "chars": float(rates.num_chars)}

    def summarize(self, sums: dict[str, float]) -> dict[str, float]:
        out = {"loss": sums["loss"] / max(sums["tokens"], 1.0)}
        if "words" in sums:
            out["cer"] = 100 * sums["char_errors"] / max(sums["chars"], 1.0)
            out["wer"] = 100 * sums["word_errors"] / max(sums["words"], 1.0)
        return out

    def valid_score(self, summary: dict[str, float]) -> float:
        return summary["cer"]
