"""Search over a :class:`~uer.generation.states.DecodingState`: token-by-token decoding (greedy or
sampled) and beam search with a length penalty (Wu et al. 2016, as implemented in Hugging Face's
``GenerationMixin._beam_search``: 2·num_beams candidates per step, finished hypotheses scored
``sum log p / new_tokens ** length_penalty``, the same stopping rules).

Both return only the new tokens, (B, N) int64 with N <= max_new_tokens, every row padded with
``pad_token_id`` after its EOS.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch.nn import functional as F

from uer.generation.states import DecodingState

NEG_INF = -1.0e9
"""The score Hugging Face gives to beams that must not be picked (kept for identical tie-breaking)."""


def decode_tokens(state: DecodingState, choose: Callable[[torch.Tensor], torch.Tensor], max_new_tokens: int,
                  eos_token_id: int | None, pad_token_id: int) -> torch.Tensor:
    """Append ``choose(logits (B, V)) -> (B,)`` (argmax for greedy, a :class:`~uer.generation.sampling.Sampler`)
    one token at a time until every row has produced ``eos_token_id`` or ``max_new_tokens`` are made.

    Rows that have finished get ``pad_token_id`` (they still go through the model, as in Hugging Face).
    Returns (B, N) int64.
    """
    logits = state.start()
    finished = torch.zeros(logits.shape[0], dtype=torch.bool, device=logits.device)
    tokens = []
    for t in range(max_new_tokens):
        token = choose(logits).masked_fill(finished, pad_token_id)
        tokens.append(token)
        if eos_token_id is not None:
            finished |= token == eos_token_id
        if t == max_new_tokens - 1 or finished.all():
            break
        logits = state.step(token)
    return torch.stack(tokens, dim=1)


def greedy(logits: torch.Tensor) -> torch.Tensor:
    """The most probable token of each row: (B, V) -> (B,)."""
    return logits.argmax(dim=-1)


def beam_search(state: DecodingState, num_beams: int, max_new_tokens: int, eos_token_id: int | None,
                pad_token_id: int, length_penalty: float = 1.0, early_stopping: bool = True) -> torch.Tensor:
    """The best hypothesis of a beam search of width ``num_beams`` per row, (B, N) int64.

    Args:
        length_penalty: a finished hypothesis of n new tokens scores ``sum log p / n ** length_penalty``
            (> 0 favours longer outputs, < 0 shorter ones).
        early_stopping: True: a row is done once ``num_beams`` hypotheses have finished. False: Hugging
            Face's heuristic; a row is done when the best running beam, scored at its current length,
            cannot beat the worst finished hypothesis.

    The state is expanded to B·num_beams rows (row b·num_beams + k is beam k of input b) and reordered
    with ``state.reorder`` after every step.
    """
    logits = state.start()
    b, vocab = logits.shape
    k = num_beams
    device = logits.device
    state.reorder(torch.arange(b, device=device).repeat_interleave(k))
    logits = logits.repeat_interleave(k, dim=0)
    keep = 2 * k  # enough candidates that k stay running even if k of them end in EOS
    top_k_mask = torch.arange(keep, device=device) < k

    running = torch.full((b, k, max_new_tokens), pad_token_id, dtype=torch.long, device=device)
    running_scores = torch.zeros(b, k, device=device)
    running_scores[:, 1:] = NEG_INF  # all beams start equal: expand only the first
    done_tokens = running.clone()
    done_scores = torch.full((b, k), NEG_INF, device=device)
    done_lengths = torch.zeros(b, k, dtype=torch.long, device=device)
    is_done = torch.zeros(b, k, dtype=torch.bool, device=device)
    improvable = torch.ones(b, 1, dtype=torch.bool, device=device)

    for t in range(max_new_tokens):
        scores = F.log_softmax(logits.float(), dim=-1).view(b, k, vocab) + running_scores[..., None]
        top_scores, top_index = torch.topk(scores.view(b, k * vocab), keep)
        parent, token = top_index // vocab, top_index % vocab
        candidates = torch.take_along_dim(running, parent[..., None], dim=1)
        candidates[:, :, t] = token
        last_step = t == max_new_tokens - 1
        ends = torch.full_like(token, last_step, dtype=torch.bool)
        if eos_token_id is not None:
            ends |= token == eos_token_id

        # the best k candidates that did not end keep running
        open_scores = top_scores + ends.float() * NEG_INF
        chosen = torch.topk(open_scores, k).indices
        running = torch.take_along_dim(candidates, chosen[..., None], dim=1)
        running_scores = torch.take_along_dim(open_scores, chosen, dim=1)
        rows = torch.take_along_dim(parent, chosen, dim=1) + torch.arange(b, device=device)[:, None] * k

        # candidates among the top k that ended join the finished hypotheses if they score better
        just_done = ends & top_k_mask
        final = top_scores / (t + 1) ** length_penalty
        final = final + (is_done.all(-1, keepdim=True) & early_stopping).float() * NEG_INF
        final = final + (~improvable).float() * NEG_INF + (~just_done).float() * NEG_INF
        merged = torch.topk(torch.cat([done_scores, final], dim=1), k).indices
        done_tokens = torch.take_along_dim(torch.cat([done_tokens, candidates], dim=1), merged[..., None], dim=1)
        done_scores = torch.take_along_dim(torch.cat([done_scores, final], dim=1), merged, dim=1)
        lengths = torch.full_like(token, t + 1)
        done_lengths = torch.take_along_dim(torch.cat([done_lengths, lengths], dim=1), merged, dim=1)
        is_done = torch.take_along_dim(torch.cat([is_done, just_done], dim=1), merged, dim=1)

        best_running = running_scores[:, :1] / (t + 1) ** length_penalty
        worst_done = torch.where(is_done, done_scores.min(dim=1, keepdim=True).values, NEG_INF)
        improvable &= (best_running > worst_done).any(dim=-1, keepdim=True)
        if last_step or not improvable.any() or (early_stopping and is_done.all()) or ends.all():
            break
        state.reorder(rows.flatten())
        logits = state.step(running[:, :, t].flatten())
    return done_tokens[:, 0, :int(done_lengths[:, 0].max())]
