"""Decoding CTC frame logits into token ids (Graves et al. 2006): greedy (best path) and prefix beam
search without a language model (Hannun et al. 2014, "First-pass large vocabulary continuous speech
recognition using bi-directional recurrent DNNs", Algorithm 1 with no LM term)."""
from __future__ import annotations

import math
from collections import defaultdict

import torch


def _check(logits: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """The lengths (B,) (all T when None), checked against logits (B, T, V)."""
    if logits.dim() != 3:
        raise ValueError(f"CTC logits must be (B, T, V), got shape {tuple(logits.shape)}")
    if lengths is None:
        return torch.full((logits.shape[0],), logits.shape[1], dtype=torch.long)
    lengths = lengths.detach().long().cpu()
    if lengths.shape != (logits.shape[0],) or bool((lengths < 0).any()) or bool((lengths > logits.shape[1]).any()):
        raise ValueError(f"CTC lengths must be (B,) = ({logits.shape[0]},) in [0, T={logits.shape[1]}], "
                         f"got {lengths.tolist()}")
    return lengths


def ctc_greedy_decode(logits: torch.Tensor, lengths: torch.Tensor | None = None, blank_id: int = 0) -> list[list[int]]:
    """Best-path decoding: the most likely token of every frame, repeats merged, blanks removed.

    Args:
        logits: (B, T, V) frame logits (or log-probabilities).
        lengths: (B,) real frames per utterance (frames beyond are padding), or None for all T.
        blank_id: the blank's id (Hugging Face: the pad token).

    Returns:
        One list of token ids per utterance.

    Raises:
        ValueError: logits not 3-D, or lengths of another shape or outside [0, T].
    """
    lengths = _check(logits, lengths)
    best = logits.argmax(-1).cpu()
    out = []
    for row, n in zip(best.tolist(), lengths.tolist()):
        row = row[:n]
        out.append([t for i, t in enumerate(row) if t != blank_id and (i == 0 or t != row[i - 1])])
    return out


def _log_add(a: float, b: float) -> float:
    if a == -math.inf:
        return b
    if b == -math.inf:
        return a
    hi, lo = max(a, b), min(a, b)
    return hi + math.log1p(math.exp(lo - hi))


def _prefix_beam(log_probs: list[list[float]], beam_size: int, blank_id: int) -> list[int]:
    """Prefix beam search over one utterance's (T, V) log-probabilities: each prefix keeps the
    log-probabilities of its paths ending in blank and in its last token, merged over paths that
    collapse to it; the ``beam_size`` most likely prefixes survive each frame."""
    beams = {(): (0.0, -math.inf)}  # prefix -> (log p ending in blank, log p ending in non-blank)
    for frame in log_probs:
        candidates = sorted(range(len(frame)), key=frame.__getitem__, reverse=True)[:beam_size + 1]
        nxt: dict[tuple, list[float]] = defaultdict(lambda: [-math.inf, -math.inf])
        for prefix, (p_blank, p_token) in beams.items():
            total = _log_add(p_blank, p_token)
            last = prefix[-1] if prefix else None
            for v in candidates:
                p = frame[v]
                if v == blank_id:
                    nxt[prefix][0] = _log_add(nxt[prefix][0], total + p)
                elif v == last:  # a repeat extends the prefix only after a blank
                    nxt[prefix][1] = _log_add(nxt[prefix][1], p_token + p)
                    nxt[prefix + (v,)][1] = _log_add(nxt[prefix + (v,)][1], p_blank + p)
                else:
                    nxt[prefix + (v,)][1] = _log_add(nxt[prefix + (v,)][1], total + p)
        ranked = sorted(nxt.items(), key=lambda kv: _log_add(*kv[1]), reverse=True)[:beam_size]
        beams = {prefix: (pb, pt) for prefix, (pb, pt) in ranked}
    return list(max(beams.items(), key=lambda kv: _log_add(*kv[1]))[0])


def ctc_beam_decode(logits: torch.Tensor, lengths: torch.Tensor | None = None, blank_id: int = 0,
                    beam_size: int = 8) -> list[list[int]]:
    """Prefix beam search without a language model: the token sequence whose total probability,
    summed over all its alignments among the kept prefixes, is highest. ``beam_size=1`` can still
    differ from greedy decoding, which scores single paths; a wide beam finds the most probable
    labelling more often.

    Per frame only the ``beam_size + 1`` most likely tokens (blank included) extend the prefixes,
    which bounds the work at O(T · beam_size²) per utterance.

    Args:
        logits: (B, T, V) frame logits (normalized here with log-softmax in float32).
        lengths: (B,) real frames per utterance, or None for all T.
        blank_id: the blank's id.
        beam_size: prefixes kept per frame (>= 1).

    Returns:
        One list of token ids per utterance.

    Raises:
        ValueError: bad logits or lengths (see :func:`ctc_greedy_decode`), or ``beam_size`` < 1.
    """
    if beam_size < 1:
        raise ValueError(f"beam_size must be >= 1, got {beam_size}")
    lengths = _check(logits, lengths)
    log_probs = torch.log_softmax(logits.detach().float(), dim=-1).cpu()
    return [_prefix_beam(row[:n].tolist(), beam_size, blank_id) for row, n in zip(log_probs, lengths.tolist())]


def ctc_transcripts(model, batch: dict[str, torch.Tensor], blank_id: int, beam_size: int = 1) -> list[list[int]]:
    """Token ids of each utterance of ``batch`` from a CTC model (a :class:`~uer.models.model.Model`
    with a CTC target, e.g. wav2vec 2.0 + CTC): encode, frame logits (B, T', V), then best path
    (``beam_size`` 1, :func:`ctc_greedy_decode`) or prefix beam search (:func:`ctc_beam_decode`)
    over each utterance's real frames (the encoder's mask).

    Raises:
        ValueError: ``beam_size`` < 1.
    """
    hidden, mask = model.encode(batch)
    logits = model.logits(hidden)
    lengths = None if mask is None else mask.sum(-1)
    if beam_size > 1:
        return ctc_beam_decode(logits, lengths, blank_id, beam_size=beam_size)
    if beam_size < 1:
        raise ValueError(f"beam_size must be >= 1, got {beam_size}")
    return ctc_greedy_decode(logits, lengths, blank_id)
