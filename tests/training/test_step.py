"""The pieces of one training step: augmentation draws, mixup / CutMix of a batch, the loss."""

import torch
import torch.nn.functional as F

from audiomamba.training.config import AugmentConfig
from audiomamba.training.step import batch_generator, mix_batch, tagging_loss


def test_batch_generator_depends_only_on_the_batch_place():
    draw = lambda *place: torch.rand(4, generator=batch_generator(*place))  # noqa: E731
    assert torch.equal(draw(0, 3, 7, 1), draw(0, 3, 7, 1))
    assert not torch.equal(draw(0, 3, 7, 1), draw(0, 3, 8, 1))
    assert not torch.equal(draw(0, 3, 7, 1), draw(0, 3, 7, 0))


def test_mix_batch():
    wave, target = torch.randn(4, 100), torch.eye(4)
    w, t, lam = mix_batch(wave, target, AugmentConfig(), batch_generator(0, 0, 1, 0))[:3]
    assert w is wave and t is target and lam is None  # nothing asked, nothing done
    w, t, lam = mix_batch(wave, target, AugmentConfig(mixup="spec"), batch_generator(0, 0, 1, 0))[:3]
    assert w is wave and lam.shape == (4,)  # the model mixes the spectrograms
    want = lam[:, None] * target + (1 - lam[:, None]) * target.flip(0)
    torch.testing.assert_close(t, want)
    w, t, lam = mix_batch(wave, target, AugmentConfig(mixup="wave"), batch_generator(0, 0, 1, 0))[:3]
    assert lam is None and not torch.equal(w, wave)
    w, t, lam = mix_batch(wave, target, AugmentConfig(mixup="none", cutmix_prob=1.0), batch_generator(0, 0, 1, 0))[:3]
    assert lam is None and t.shape == target.shape and torch.allclose(t.sum(1), torch.ones(4))


def test_tagging_loss():
    logits, target = torch.randn(3, 5), torch.zeros(3, 5)
    target[torch.arange(3), torch.tensor([0, 4, 2])] = 1
    torch.testing.assert_close(tagging_loss(logits, target, True), F.binary_cross_entropy_with_logits(logits, target))
    torch.testing.assert_close(tagging_loss(logits, target, False), F.cross_entropy(logits, torch.tensor([0, 4, 2])))
    torch.testing.assert_close(tagging_loss(logits, 2 * target, False), tagging_loss(logits, target, False))
