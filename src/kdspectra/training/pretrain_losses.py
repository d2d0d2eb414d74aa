"""The two pretraining objectives of the teachers trained here, in fp32.

* :func:`clip_loss`: CLIP's symmetric InfoNCE between images and their class captions
  with a learned temperature. CLIP's batches hold distinct captions; here ten captions
  cover the whole dataset, so a batch of 256 repeats each ~25 times, and CLIP's loss
  taken literally (caption i is the positive of image i only) would call the copies of
  one caption "negatives" of each other's images and push same-class images apart. The
  captions are therefore deduplicated: image → text is a softmax over the distinct
  captions of the batch (one positive each), text → image a softmax over the batch's
  images in which every image of that caption is a positive (averaged, as SupCon's
  L_out). With one image per caption it is exactly CLIP's loss (a test holds that).
* :func:`nt_xent`: SimCLR's normalised-temperature cross entropy over two views.
* :func:`koleo`: the Kozachenko–Leonenko entropy estimator of Sablayrolles et al.
  (2019), DINOv2's regulariser that spreads the L2-normalised features:
  −mean log(min_j ‖x_i − x_j‖).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# CLIP clamps its learned logit scale at 100 (temperature 0.01) for stability.
MAX_LOGIT_SCALE = 100.0
_KOLEO_EPS = 1e-8


def clip_loss(
    image: torch.Tensor, text: torch.Tensor, labels: torch.Tensor, logit_scale: torch.Tensor
) -> torch.Tensor:
    """Symmetric InfoNCE of B image rows against the C caption rows, deduplicated.

    ``text`` holds one row per caption (class); ``labels`` (B) the caption of each image;
    ``logit_scale`` is the log of CLIP's inverse temperature (a learned scalar).
    """
    present, target = torch.unique(labels, return_inverse=True)
    img = F.normalize(image.float(), dim=-1)
    txt = F.normalize(text.float()[present], dim=-1)
    scale = logit_scale.float().exp().clamp(max=MAX_LOGIT_SCALE)
    logits = scale * img @ txt.T  # B×C'
    image_to_text = F.cross_entropy(logits, target)
    positives = F.one_hot(target, len(present)).T.float()  # C'×B
    log_p = logits.T.log_softmax(dim=-1)
    text_to_image = -((positives * log_p).sum(-1) / positives.sum(-1)).mean()
    return 0.5 * (image_to_text + text_to_image)


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's loss: each of the 2B views must find its partner among the other 2B − 1."""
    z = F.normalize(torch.cat([z1, z2]).float(), dim=-1)
    n = len(z1)
    sim = z @ z.T / temperature
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    partner = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(sim, partner)


def koleo(x: torch.Tensor) -> torch.Tensor:
    """KoLeo: −mean over rows of log(distance to the nearest other L2-normalised row)."""
    z = F.normalize(x.float(), dim=-1)
    dots = z @ z.T
    dots.fill_diagonal_(-2.0)  # never one's own nearest neighbour
    nearest = dots.argmax(dim=1)
    dist = (z - z[nearest]).norm(dim=-1)
    return -torch.log(dist + _KOLEO_EPS).mean()
