"""The vectorised per-document mask and sums against a plain loop."""

from __future__ import annotations

import torch

from harness.attention.engine import DocSegments, masked_doc_sums


def _naive(s: torch.Tensor, spans):
    out = []
    for a, b in spans:
        vals = s[a:b].tolist()
        if len(vals) == 1:
            out.append(vals[0])
            continue
        v = torch.tensor(vals, dtype=torch.float64)
        mu, sd = float(v.mean()), float(v.std())
        out.append(sum(x for x in vals if x > mu - 2 * sd))
    return out


def test_masked_sums_match_a_loop_for_every_row():
    g = torch.Generator().manual_seed(0)
    spans = [(1, 9), (9, 10), (12, 40), (40, 43), (50, 51)]
    s = torch.randn(6, 60, generator=g, dtype=torch.float64)
    s[2, 12:40] = 0.0
    s[3, 20] = 50.0  # high outlier: kept (only tokens below mean - 2 std are masked)
    s[4, 30] = -50.0  # low outlier: dropped
    got = masked_doc_sums(s, DocSegments.from_spans(spans))
    for k in range(6):
        assert torch.allclose(got[k], torch.tensor(_naive(s[k], spans), dtype=torch.float64), atol=1e-12)


def test_low_outlier_dropped_one_token_kept_constant_doc_zero():
    s = torch.tensor([[1.0, 1.1, 0.9, 1.0, 1.05, 0.95, 1.0, 1.0, 1.02, -9.0, 7.0, 2.0, 2.0, 2.0]], dtype=torch.float64)
    got = masked_doc_sums(s, DocSegments.from_spans([(0, 10), (10, 11), (11, 14)]))[0]
    assert abs(float(got[0]) - float(s[0, :9].sum())) < 1e-12  # -9 < mean - 2 std: masked
    assert float(got[1]) == 7.0  # one-token document keeps its token (the paper's sigma is NaN)
    assert float(got[2]) == 0.0  # sigma = 0 and the strict '>' masks every token, as in the paper
