"""wav2vec 2.0's self-supervised objective (Baevski et al. 2020, §3): a Gumbel-softmax product
quantizer of the latent features, and a contrastive task to identify the true quantized latent of
each masked frame among K distractors, plus the codebook diversity penalty (Hugging Face
``Wav2Vec2GumbelVectorQuantizer`` and ``Wav2Vec2ForPreTraining``)."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from uer.layers.dropout import Dropout
from uer.targets.output import TargetOutput

EXTRACT_FEATURES = "extract_features"
"""Batch key of the normalized latent features (B, T', C), left there by the waveform embedding's
feature projection (:data:`uer.embeddings.waveform.EXTRACT_FEATURES`)."""
MASK_FIELD, NEGATIVES_FIELD = "mask_time_indices", "sampled_negative_indices"
"""Batch keys of the masked frames (B, T') and of the distractors (B, T', K), the latter indexing the
batch's frames flattened to B·T' (Hugging Face's ``_sample_negative_indices``)."""


class GumbelQuantizer(nn.Module):
    """Product quantization with G codebooks of V entries (§3.2): a linear map C -> G·V gives logits
    per group; training picks one entry per group by straight-through Gumbel-softmax at temperature
    τ (Jang et al. 2017), evaluation by argmax; the chosen entries (each of width E / G) are
    concatenated: (B, T', C) -> (B, T', E).

    Also returns the perplexity Σ_g exp(H(p̄_g)) of the codebook usage p̄_g averaged over the masked
    frames (all frames without a mask): of the softmax of the logits while training, of the one-hot
    choices in evaluation, as the reference.

    Parameters: ``codevectors`` (1, G·V, E / G), ``weight_proj.*`` (G·V, C), named as Hugging Face's.
    Initialization as the reference: weight_proj normal(0, 1) with zero bias, codevectors uniform [0, 1).

    Args:
        in_dim: C. groups: G. entries: V. dim: E (codevector_dim).
        temperature: τ. The paper anneals it from 2 to 0.5 by a factor 0.999995 per update; uer's
            training loop gives parts no step count, so it stays fixed (default 2, the schedule's
            start; after 10,000 updates the schedule is still at 1.90).

    Raises:
        ValueError: E not divisible by G, or τ <= 0.
    """

    def __init__(self, in_dim: int, groups: int = 2, entries: int = 320, dim: int = 256, temperature: float = 2.0):
        super().__init__()
        if dim % groups:
            raise ValueError(f"codevector_dim {dim} is not divisible by num_codevector_groups {groups}")
        if not temperature > 0:
            raise ValueError(f"the Gumbel-softmax temperature must be > 0, got {temperature}")
        self.groups, self.entries, self.temperature = groups, entries, temperature
        self.codevectors = nn.Parameter(torch.empty(1, groups * entries, dim // groups))
        self.weight_proj = nn.Linear(in_dim, groups * entries)

    def init_weights(self, std: float) -> None:
        """The reference's initialization (``std`` is not used)."""
        nn.init.normal_(self.weight_proj.weight, std=1.0)
        nn.init.zeros_(self.weight_proj.bias)
        nn.init.uniform_(self.codevectors)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (B, T', C), mask (B, T') bool or None -> (quantized (B, T', E), perplexity ())."""
        b, t, _ = x.shape
        logits = self.weight_proj(x).view(b * t, self.groups, self.entries)
        if self.training:
            choice = F.gumbel_softmax(logits.float(), tau=self.temperature, hard=True).type_as(logits)
            usage = torch.softmax(logits.float(), dim=-1)
        else:
            choice = F.one_hot(logits.argmax(-1), self.entries).to(logits.dtype)
            usage = choice
        perplexity = self.perplexity(usage, None if mask is None else mask.reshape(-1))
        codevectors = self.codevectors.view(self.groups, self.entries, -1).to(choice.dtype)
        quantized = torch.einsum("ngv,gve->nge", choice, codevectors)
        return quantized.reshape(b, t, -1), perplexity

    @staticmethod
    def perplexity(probs: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """probs (N, G, V), mask (N,) bool or None -> Σ_g exp(-Σ_v p̄_gv log p̄_gv) ()."""
        if mask is not None:
            marginal = (probs * mask[:, None, None]).sum(0) / mask.sum()
        else:
            marginal = probs.mean(0)
        return torch.exp(-torch.xlogy(marginal, marginal).sum(-1)).sum()


class Wav2Vec2Target(nn.Module):
    """The wav2vec 2.0 pretraining loss of one batch, summed over its N masked frames (Eq. 2-4):

    ``loss_sum = L_m + α · L_d`` with the contrastive loss L_m = Σ_t -log(exp(sim(c_t, q_t)/κ) /
    Σ_{q̃ ∈ {q_t} ∪ Q_t} exp(sim(c_t, q̃)/κ)) over masked frames t, c_t = ``project_hid``(hidden),
    q = ``project_q``(quantizer(``extract_features``)), sim the cosine similarity, Q_t the K distractors
    ``sampled_negative_indices`` (a distractor equal to q_t gets logit -inf), and the diversity loss
    L_d = N · (G·V - perplexity) / (G·V). The trainer divides by N, the masked frames of the step
    (Hugging Face's ``Wav2Vec2ForPreTraining`` returns the sum; its pretraining script divides by N).

    Reads ``extract_features`` (left by the embedding), ``mask_time_indices`` and
    ``sampled_negative_indices`` (from the collator, :class:`uer.data.wav2vec2.Wav2Vec2Collator`).
    ``logits['wav2vec2']``: (N, 1 + K) contrastive logits of the masked frames, the true latent first.
    Metrics: ``contrastive`` and ``diversity`` (per masked frame), ``perplexity`` (per batch) and
    ``acc`` (masked frames whose true latent scores highest).

    Parameters: ``quantizer.*`` (:class:`GumbelQuantizer`), ``project_hid.*`` (P, D), ``project_q.*`` (P, E).

    Args:
        dim: D. conv_dim: the feature encoder's channels per layer; C = ``conv_dim[-1]``.
        num_groups (G), num_entries (V), codevector_dim (E), temperature: of the quantizer. proj_dim: P (``proj_codevector_dim``).
        logit_temperature: κ (0.1). diversity_weight: α (0.1). feature_dropout: on the latent
            features before quantization (``feat_quantizer_dropout``).

    Raises:
        ValueError: κ <= 0, α < 0, or a bad quantizer setting (:class:`GumbelQuantizer`).
    """

    def __init__(self, dim: int, conv_dim: list[int], num_groups: int = 2, num_entries: int = 320,
                 codevector_dim: int = 256,
                 proj_dim: int = 256, temperature: float = 2.0, logit_temperature: float = 0.1,
                 diversity_weight: float = 0.1, feature_dropout: float = 0.0):
        super().__init__()
        if not logit_temperature > 0 or not diversity_weight >= 0:
            raise ValueError(f"contrastive temperature {logit_temperature} must be > 0 and diversity weight "
                             f"{diversity_weight} >= 0")
        self.dropout_features = Dropout(feature_dropout)
        self.quantizer = GumbelQuantizer(conv_dim[-1], num_groups, num_entries, codevector_dim, temperature)
        self.project_hid = nn.Linear(dim, proj_dim)
        self.project_q = nn.Linear(codevector_dim, proj_dim)
        self.logit_temperature, self.diversity_weight = logit_temperature, diversity_weight

    def init_weights(self, std: float) -> None:
        """The reference's: PyTorch's default for both projections, the quantizer's own (``std`` unused)."""
        self.project_hid.reset_parameters()
        self.project_q.reset_parameters()
        self.quantizer.init_weights(std)

    def num_items(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """N, the masked frames (scalar)."""
        return batch[MASK_FIELD].sum()

    def forward(self, hidden: torch.Tensor, batch: dict[str, torch.Tensor]) -> TargetOutput:
        masked = batch[MASK_FIELD].bool()
        b, t, _ = hidden.shape
        predicted = self.project_hid(hidden[masked])  # (N, P)
        quantized, perplexity = self.quantizer(self.dropout_features(batch[EXTRACT_FEATURES]), masked)
        quantized = self.project_q(quantized.to(self.project_q.weight.dtype)).reshape(b * t, -1)  # (B·T', P)
        positive = quantized[masked.reshape(-1)]  # (N, P)
        negatives = quantized[batch[NEGATIVES_FIELD][masked].long()]  # (N, K, P)
        candidates = torch.cat([positive[:, None], negatives], dim=1)
        logits = F.cosine_similarity(predicted.float()[:, None], candidates.float(), dim=-1) / self.logit_temperature
        same = (negatives == positive[:, None]).all(-1)
        logits = torch.cat([logits[:, :1], logits[:, 1:].masked_fill(same, float("-inf"))], dim=1)
        zeros = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
        contrastive = F.cross_entropy(logits, zeros, reduction="sum")
        n = masked.sum()
        codes = self.quantizer.groups * self.quantizer.entries
        diversity = (codes - perplexity) / codes * n
        loss_sum = contrastive + self.diversity_weight * diversity
        correct = (logits[:, 0] >= logits.detach().max(-1).values).sum()
        metrics = {"contrastive": (contrastive.detach(), n), "diversity": (diversity.detach(), n),
                   "perplexity": (perplexity.detach(), torch.ones_like(n)), "acc": (correct, n)}
        return TargetOutput.single("wav2vec2", loss_sum, n, logits, metrics)
