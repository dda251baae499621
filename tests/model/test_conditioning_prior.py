"""An SPN as the class-conditional prior over a VQ-VAE's code map, as a user of a VQ-VAE would train it (the
README's "Conditional models" example): codes [B, 1, 16, 16] with 512 values (bits=9, channels=1), a label per
map; and as a decoder conditioned on an encoder's feature map, trained end to end."""

from __future__ import annotations

import torch

from spn import SPN, SPNConfig


def fake_codes(labels: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """A stand-in for a VQ-VAE encoder's code indices, int64 [B, 1, 16, 16] in [0, 512): each class uses its own
    band of 64 codes, so the label tells the prior which codes to expect."""
    return labels[:, None, None, None] * 64 + torch.randint(0, 64, (len(labels), 1, 16, 16), generator=g)


def test_vqvae_prior_over_codes_given_a_label():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    prior = SPN(SPNConfig(image_size=16, channels=1, bits=9, subscale=4, classes=8))
    opt = torch.optim.Adam(prior.parameters(), lr=1e-2)
    losses = []
    for _ in range(60):
        labels = torch.randint(0, 8, (8,), generator=g)
        codes = fake_codes(labels, g)
        loss = prior.loss(codes, slices_per_step=2, labels=labels)  # bits per code
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    # 9 bits/code at the start; 6 bits/code once it knows each label's band of 64 codes
    assert sum(losses[-5:]) / 5 < losses[0] - 1

    prior.eval()
    labels = torch.tensor([0, 5])
    codes = fake_codes(labels, g)
    with torch.no_grad():
        nats = prior.log_prob(codes, labels=labels)  # exact, float64 [2]
        wrong = prior.log_prob(codes, labels=labels.flip(0))
    assert (nats > wrong).all()  # the codes are likelier under their own label
    sampled, lp = prior.sample(2, labels=labels, generator=torch.Generator().manual_seed(1), return_log_prob=True)
    assert sampled.shape == (2, 1, 16, 16) and sampled.max() < 512
    with torch.no_grad():
        torch.testing.assert_close(lp, prior.log_prob(sampled, labels=labels), rtol=1e-5, atol=0)


def test_decoder_given_an_encoder_feature_map_trains_end_to_end():
    torch.manual_seed(0)
    encoder = torch.nn.Conv2d(1, 4, 3, padding=1)  # any feature map [B, D, N, N] at the image's resolution
    decoder = SPN(SPNConfig(image_size=8, channels=1, bits=4, subscale=2, cond_channels=4))
    x = torch.randint(0, 16, (4, 1, 8, 8))
    loss = decoder.loss(x, cond=encoder(x.float() / 15))
    loss.backward()
    assert encoder.weight.grad.abs().sum() > 0  # gradients reach the encoder through the conditioning
