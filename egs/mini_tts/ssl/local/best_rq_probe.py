"""Probe why BEST-RQ does not learn on mini_tts: train the small body on its own targets, briefly.

    python local/best_rq_probe.py --loss {masked,visible,both} [--updates 75] [--codes 8192] [--lr 1e-3]
        [--head {linear,cosine}] [--mask-length 20 --mask-prob 0.4] [--mask-input {embedding,noise}] [--data data]
    python local/best_rq_probe.py --checkpoint exp_best_rq/best_rq_iter1/checkpoints/best.pt

Run from egs/mini_tts/ssl after its stage 1 (fbank of train_unlab and dev). ``masked`` is BEST-RQ's
loss (cross entropy at masked frames); ``visible`` trains on every frame with nothing masked (can the
body compute the quantizer's ids from the frames themselves?); ``both`` adds the visible frames' loss
to the masked one. Every 25 updates it prints the dev cross entropy and accuracy at the frames the
loss scores (masked frames, or all frames for ``visible``) and how many distinct ids the model
predicts on one dev batch: 1 means its outputs there no longer depend on the input.
``--head cosine`` swaps the softmax layer for HuBERT's (cosine to learned code embeddings / 0.1).
``--mask-input noise`` masks as the paper: the masked frames' normalised fbank (both 10 ms frames of
a masked model frame) replaced by N(0, 0.1) noise before the front end, instead of the learned mask
embedding after it (the front end normalises its input again, so the noise is scaled slightly).
Batches: 6 random utterances; AdamW, linear warmup over 30 updates, gradients clipped at 10.
``--checkpoint`` trains nothing: it scores a pretrained BEST-RQ model's first codebook on dev
(accuracy and distinct predicted ids at masked frames, and at every frame with nothing masked) and
says how often a frame's id equals the previous frame's.
Both first print the unigram floor: the dev cross entropy and accuracy of predicting every frame
from the training targets' id frequencies alone (add-one smoothed). A dev loss at the floor means
the model has learned how often each id occurs and nothing about the frame.
"""
from __future__ import annotations

import argparse
import random
import time

import torch
from torch import nn

from audiossl.checkpoint import load_checkpoint, model_from_checkpoint
from audiossl.data.dataset import UtteranceDataset, collate
from audiossl.models.best_rq import BestRqConfig, build_best_rq
from audiossl.models.best_rq.model import IGNORE_INDEX
from audiossl.nn.frontends import utterance_cmvn

DEV_UTTERANCES = 48  # the dev figures of a training probe: its first 48 utterances, in batches of 8


class CosineHead(nn.Module):
    """HuBERT's prediction head: cosine between a projection and learned code embeddings, over 0.1."""

    def __init__(self, dim: int, codes: int) -> None:
        super().__init__()
        self.projection = nn.Linear(dim, 256)
        self.embeddings = nn.Parameter(torch.randn(codes, 256))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(self.projection(hidden), dim=-1) @ \
            nn.functional.normalize(self.embeddings, dim=-1).t() / 0.1


@torch.no_grad()
def print_unigram_floor(model, train: UtteranceDataset, dev: UtteranceDataset, dev_utterances: int) -> None:
    """The dev cross entropy and accuracy of the training targets' (add-one smoothed) id frequencies."""
    def targets_of(data: UtteranceDataset, count: int) -> torch.Tensor:
        ids = []
        for start in range(0, count, 16):
            batch = collate([data[i] for i in range(start, min(start + 16, count))])
            targets = model.make_targets(batch.inputs, batch.lengths)[..., 0]
            ids.append(targets[targets != IGNORE_INDEX])
        return torch.cat(ids)

    codes = model.quantizer.codebook_size
    counts = torch.bincount(targets_of(train, len(train)), minlength=codes).double() + 1.0
    dev_ids = targets_of(dev, dev_utterances)
    cross_entropy = -(counts / counts.sum()).log()[dev_ids].mean()
    accuracy = (dev_ids == counts.argmax()).double().mean()
    print(f"unigram floor ({codes} codes; id frequencies of {len(train)} training utterances, "
          f"{len(dev_ids)} frames of {dev_utterances} dev utterances): dev cross entropy {cross_entropy:.3f}, "
          f"accuracy {accuracy:.3f}", flush=True)


@torch.no_grad()
def score_checkpoint(path: str, train: UtteranceDataset, dev: UtteranceDataset) -> None:
    model = model_from_checkpoint(load_checkpoint(path)).eval()
    print_unigram_floor(model, train, dev, len(dev))
    generator = torch.Generator().manual_seed(0)
    right = {"masked": [], "visible": []}
    predicted = {"masked": [], "visible": []}
    repeats = pairs = 0
    for start in range(0, len(dev), 8):
        batch = collate([dev[i] for i in range(start, min(start + 8, len(dev)))])
        targets = model.make_targets(batch.inputs, batch.lengths)[..., 0]
        has_target = targets != IGNORE_INDEX
        mask = model.span_mask(tuple(targets.shape), model.num_frames(batch.lengths), generator)
        for name, hidden_mask, frames in (("masked", mask, mask & has_target), ("visible", None, has_target)):
            hidden = model.encode(batch.inputs, batch.lengths, hidden_mask)[0][-1]
            predictions = model.heads[0](hidden[frames]).argmax(-1)
            right[name].append(predictions == targets[frames])
            predicted[name].append(predictions)
        for row, valid in zip(targets, has_target):
            ids = row[valid]
            repeats += int((ids[1:] == ids[:-1]).sum())
            pairs += max(len(ids) - 1, 0)
    for name in right:
        predictions = torch.cat(predicted[name])
        top_share = torch.bincount(predictions).max().item() / len(predictions)
        print(f"{name} frames: accuracy {torch.cat(right[name]).float().mean():.3f}, "
              f"{len(set(predictions.tolist()))} distinct predicted ids (the most frequent {top_share:.0%})")
    print(f"a frame's id equals the previous frame's: {repeats / pairs:.1%} of {pairs} pairs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--loss", choices=("masked", "visible", "both"), default="masked")
    parser.add_argument("--checkpoint", help="score this pretrained BEST-RQ checkpoint on dev instead of training")
    parser.add_argument("--updates", type=int, default=75)
    parser.add_argument("--codes", type=int, default=8192)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--head", choices=("linear", "cosine"), default="linear")
    parser.add_argument("--mask-length", type=int, default=None, help="span length (default: best_rq's 20)")
    parser.add_argument("--mask-prob", type=float, default=None, help="span start rate (default: best_rq's 0.4)")
    parser.add_argument("--mask-input", choices=("embedding", "noise"), default="embedding",
                        help="masked frames: the learned embedding after the front end, or noise in its input")
    parser.add_argument("--data", default="data")
    args = parser.parse_args()
    train = UtteranceDataset(f"{args.data}/train_unlab_fbank", "fbank")
    dev = UtteranceDataset(f"{args.data}/dev_fbank", "fbank")
    if args.checkpoint:
        score_checkpoint(args.checkpoint, train, dev)
        return
    torch.manual_seed(0)
    sampler = random.Random(0)
    config = BestRqConfig.small("fbank")
    config.codebook_size = args.codes
    config.mask.length = args.mask_length or config.mask.length
    config.mask.prob = args.mask_prob or config.mask.prob
    model = build_best_rq(config)
    if args.head == "cosine":
        model.heads[0] = CosineHead(config.encoder.dim, args.codes)
    print_unigram_floor(model, train, dev, DEV_UTTERANCES)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    generator = torch.Generator().manual_seed(0)

    def scored(batch, training: bool):
        """Cross entropy and accuracy at the scored frames, distinct predicted ids, and the total loss."""
        targets = model.make_targets(batch.inputs, batch.lengths)[..., 0]
        mask = None if args.loss == "visible" else \
            model.span_mask(tuple(targets.shape), model.num_frames(batch.lengths), generator)
        inputs, hidden_mask = batch.inputs, mask
        if mask is not None and args.mask_input == "noise":
            inputs = utterance_cmvn(inputs, batch.lengths)
            fbank_mask = mask.repeat_interleave(config.stack_frames, dim=1)[:, :inputs.shape[1], None]
            inputs = torch.where(fbank_mask, 0.1 * torch.randn(inputs.shape, generator=generator), inputs)
            hidden_mask = None
        hidden = model.encode(inputs, batch.lengths, hidden_mask, generator if training else None)[0][-1]
        has_target = targets != IGNORE_INDEX
        frames = has_target if mask is None else mask & has_target
        logits = model.heads[0](hidden[frames])
        loss = nn.functional.cross_entropy(logits, targets[frames])
        predictions = logits.argmax(-1)
        total = loss
        if args.loss == "both" and training:
            visible = ~mask & has_target
            total = loss + nn.functional.cross_entropy(model.heads[0](hidden[visible]), targets[visible])
        return loss, (predictions == targets[frames]).float().mean().item(), len(set(predictions.tolist())), total

    start = time.time()
    for update in range(1, args.updates + 1):
        model.train()
        for group in optimizer.param_groups:
            group["lr"] = args.lr * min(1.0, update / 30)
        batch = collate([train[i] for i in sampler.sample(range(len(train)), 6)])
        total = scored(batch, True)[3]
        optimizer.zero_grad()
        total.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        optimizer.step()
        if update % 25 == 0:
            model.eval()
            with torch.no_grad():
                results = [scored(collate([dev[i] for i in range(j, j + 8)]), False)
                           for j in range(0, DEV_UTTERANCES, 8)]
            loss = sum(r[0].item() for r in results) / len(results)
            accuracy = sum(r[1] for r in results) / len(results)
            print(f"loss {args.loss} head {args.head} codes {args.codes} mask {args.mask_input} update {update}: "
                  f"train {total.item():.3f} dev {loss:.3f}, dev accuracy {accuracy:.3f}, "
                  f"distinct predictions {results[0][2]} ({time.time() - start:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
