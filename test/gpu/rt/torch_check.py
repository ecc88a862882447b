"""torch_check.py: PyTorch on the GPU, natively or through libvgpu.so (the same script both ways).
Tensor ops and a matmul checked against the CPU; a small MLP trained for 300 steps (seeded: the
losses of a native run and a shim run are comparable); a transformer training step timed (median
of 30 after 10 warm-up steps). Prints one JSON line with the numbers; exit 1 on a wrong result.
VGPU_TORCH_MODEL=big: a GPU-bound step instead (d_model 1024, 8 layers, batch 16 x 512).
"""
import os
import json
import statistics
import sys
import time

import torch
import torch.nn as nn

r = {"torch": torch.__version__, "cuda": torch.version.cuda}
assert torch.cuda.is_available(), "no CUDA device"
dev = torch.device("cuda")
r["device"] = torch.cuda.get_device_name(0)

x = torch.arange(1 << 20, dtype=torch.float32)
y = (x.to(dev) * 2 + 1).sum().item()
assert y == float((x * 2 + 1).sum().item()), y
a, b = torch.randn(256, 384), torch.randn(384, 128)
err = ((a.to(dev) @ b.to(dev)).cpu() - a @ b).abs().max().item()
assert err < 1e-2, err
r["matmul_max_err"] = err

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 1)).to(dev)
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
g = torch.Generator().manual_seed(1)
data = torch.randn(4096, 64, generator=g)
target = (data[:, :8].sum(1, keepdim=True) ** 2) / 8
data, target = data.to(dev), target.to(dev)
losses = []
for step in range(300):
    idx = torch.randint(0, 4096, (256,), generator=g).to(dev)
    loss = nn.functional.mse_loss(model(data[idx]), target[idx])
    opt.zero_grad()
    loss.backward()
    opt.step()
    if step % 50 == 0 or step == 299:
        losses.append(round(loss.item(), 5))
r["mlp_losses"] = losses
assert losses[-1] < losses[0] / 2, losses

big = os.environ.get("VGPU_TORCH_MODEL") == "big"
d_model, nlayers, seq = (1024, 8, 512) if big else (256, 4, 128)
r["gpt_model"] = "d%d_l%d_b16x%d" % (d_model, nlayers, seq)
torch.manual_seed(0)
layer = nn.TransformerEncoderLayer(d_model=d_model, nhead=8, dim_feedforward=4 * d_model, batch_first=True)
gpt = nn.Sequential(nn.Embedding(1000, d_model), nn.TransformerEncoder(layer, num_layers=nlayers), nn.Linear(d_model, 1000)).to(dev)
opt = torch.optim.AdamW(gpt.parameters(), lr=3e-4)
tokens = torch.randint(0, 1000, (16, seq + 1), generator=g).to(dev)
mask = nn.Transformer.generate_square_subsequent_mask(seq).to(dev)
times = []
for step in range(40):
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    h = gpt[0](tokens[:, :-1])
    h = gpt[1](h, mask=mask, is_causal=True)
    loss = nn.functional.cross_entropy(gpt[2](h).reshape(-1, 1000), tokens[:, 1:].reshape(-1))
    opt.zero_grad()
    loss.backward()
    opt.step()
    torch.cuda.synchronize()
    if step >= 10:
        times.append((time.perf_counter() - t0) * 1e3)
r["gpt_step_ms_median"] = round(statistics.median(times), 3)
r["gpt_last_loss"] = round(loss.item(), 4)
print(json.dumps(r))
print("torch_check: OK")
