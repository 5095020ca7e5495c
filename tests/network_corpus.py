"""Realistic network programs, as an LLM writes them: the static check must pass them all.

Each defines ``class Net(nn.Module)`` whose constructor needs no argument and which maps a
``(2, 3, 32, 32)`` image batch to ``(2, 10)`` logits, so that a test can also build and
run every one (proof that each is a working program, not just text the check likes).
They use only what the child's namespace gives (``torch``, ``nn``) and what they import.
"""

from __future__ import annotations

HEADER = "import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\n"

NETWORKS: dict[str, str] = {
    # LLMatic's seed network.
    "seed": HEADER
    + """
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 1, 1)
        self.fc1 = nn.Linear(1024, 10)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = torch.flatten(x, 1)
        x = self.fc1(x)
        return x
""",
    "lenet": HEADER
    + """
class Net(nn.Module):
    def __init__(self, num_classes=10):
        super(Net, self).__init__()
        self.conv1 = nn.Conv2d(3, 6, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)

    def forward(self, x):
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = x.view(x.size(0), -1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)
""",
    "vgg-config": HEADER
    + """
from typing import List, Union

CFG: List[Union[int, str]] = [32, "M", 64, "M", 128, 128, "M"]


def make_layers(cfg, batch_norm=True):
    layers = []
    in_channels = 3
    for v in cfg:
        if v == "M":
            layers += [nn.MaxPool2d(kernel_size=2, stride=2)]
        else:
            conv2d = nn.Conv2d(in_channels, v, kernel_size=3, padding=1)
            if batch_norm:
                layers += [conv2d, nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
            else:
                layers += [conv2d, nn.ReLU(inplace=True)]
            in_channels = v
    return nn.Sequential(*layers)


class Net(nn.Module):
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = make_layers(CFG)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.classifier = nn.Sequential(
            nn.Dropout(0.5), nn.Linear(128, 64), nn.ReLU(True), nn.Linear(64, num_classes)
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        x = self.features(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.classifier(x)
""",
    "resnet-basic": HEADER
    + """
from typing import List, Optional


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1,
                 downsample: Optional[nn.Module] = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class Net(nn.Module):
    def __init__(self, layers: List[int] = [1, 1, 1], num_classes: int = 10):
        super().__init__()
        self.in_planes = 16
        self.conv1 = nn.Conv2d(3, 16, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = self._make_layer(16, layers[0], stride=1)
        self.layer2 = self._make_layer(32, layers[1], stride=2)
        self.layer3 = self._make_layer(64, layers[2], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64 * BasicBlock.expansion, num_classes)

    def _make_layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.in_planes != planes * BasicBlock.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.in_planes, planes * BasicBlock.expansion, 1, stride, bias=False),
                nn.BatchNorm2d(planes * BasicBlock.expansion),
            )
        layers = [BasicBlock(self.in_planes, planes, stride, downsample)]
        self.in_planes = planes * BasicBlock.expansion
        for _ in range(1, blocks):
            layers.append(BasicBlock(self.in_planes, planes))
        return nn.Sequential(*layers)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = self.avgpool(x)
        x = x.view(x.size(0), -1)
        return self.fc(x)
""",
    "preact-shortcut": HEADER
    + """
class PreActBlock(nn.Module):
    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False))

    def forward(self, x):
        out = F.relu(self.bn1(x))
        shortcut = self.shortcut(out) if hasattr(self, "shortcut") else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + shortcut


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.blocks = nn.Sequential(PreActBlock(16, 16), PreActBlock(16, 32, 2))
        self.bn = nn.BatchNorm2d(32)
        self.linear = nn.Linear(32, 10)

    def forward(self, x):
        out = self.blocks(self.stem(x))
        out = F.relu(self.bn(out))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.linear(out)
""",
    "bottleneck-staticmethod": HEADER
    + """
class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_planes, planes):
        super().__init__()
        width = planes
        self.conv1 = self.conv1x1(in_planes, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = self.conv1x1(width, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.proj = self.conv1x1(in_planes, planes * self.expansion)

    @staticmethod
    def conv1x1(c_in, c_out):
        return nn.Conv2d(c_in, c_out, kernel_size=1, bias=False)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + self.proj(x))


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(Bottleneck(3, 8), nn.MaxPool2d(2), Bottleneck(32, 8))
        self.head = nn.Linear(8 * Bottleneck.expansion, 10)

    def forward(self, x):
        return self.head(self.body(x).mean(dim=(2, 3)))
""",
    "densenet-ordereddict": HEADER
    + """
from collections import OrderedDict


class DenseLayer(nn.Module):
    def __init__(self, c_in, growth):
        super().__init__()
        self.norm = nn.BatchNorm2d(c_in)
        self.conv = nn.Conv2d(c_in, growth, 3, padding=1, bias=False)

    def forward(self, x):
        return torch.cat([x, self.conv(F.relu(self.norm(x)))], 1)


class Net(nn.Module):
    def __init__(self, growth=8, layers=3):
        super().__init__()
        self.features = nn.Sequential(OrderedDict([
            ("conv0", nn.Conv2d(3, 16, 3, padding=1, bias=False)),
            ("norm0", nn.BatchNorm2d(16)),
            ("relu0", nn.ReLU(inplace=True)),
        ]))
        channels = 16
        for i in range(layers):
            self.features.add_module("denselayer%d" % (i + 1), DenseLayer(channels, growth))
            channels += growth
        self.features.add_module("norm5", nn.BatchNorm2d(channels))
        self.classifier = nn.Linear(channels, 10)

    def forward(self, x):
        features = self.features(x)
        out = F.relu(features, inplace=True)
        out = F.adaptive_avg_pool2d(out, (1, 1))
        out = torch.flatten(out, 1)
        assert self.features.norm5.num_features == out.shape[1]
        return self.classifier(out)
""",
    "squeeze-excitation": HEADER
    + """
class SEBlock(nn.Module):
    def __init__(self, channels, reduction=4):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.fc = nn.Sequential(
            nn.Linear(channels, hidden, bias=False), nn.ReLU(inplace=True),
            nn.Linear(hidden, channels, bias=False), nn.Sigmoid())

    def forward(self, x):
        b, c, _, _ = x.size()
        y = x.mean(dim=(2, 3))
        y = self.fc(y).view(b, c, 1, 1)
        return x * y.expand_as(x)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 32, 3, padding=1)
        self.se = SEBlock(32)
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        x = self.se(F.relu(self.conv(x)))
        return self.fc(x.mean(dim=(2, 3)))
""",
    "mobilenet-inverted-residual": HEADER
    + """
def _make_divisible(v, divisor=8, min_value=None):
    if min_value is None:
        min_value = divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


class InvertedResidual(nn.Module):
    def __init__(self, inp, oup, stride, expand_ratio):
        super().__init__()
        hidden_dim = int(round(inp * expand_ratio))
        self.use_res_connect = stride == 1 and inp == oup
        self.conv = nn.Sequential(
            nn.Conv2d(inp, hidden_dim, 1, 1, 0, bias=False),
            nn.BatchNorm2d(hidden_dim),
            nn.ReLU6(inplace=True),
            nn.Conv2d(hidden_dim, hidden_dim, 3, stride, 1, groups=hidden_dim, bias=False),
            nn.BatchNorm2d(hidden_dim),
            nn.ReLU6(inplace=True),
            nn.Conv2d(hidden_dim, oup, 1, 1, 0, bias=False),
            nn.BatchNorm2d(oup),
        )

    def forward(self, x):
        if self.use_res_connect:
            return x + self.conv(x)
        return self.conv(x)


class Net(nn.Module):
    def __init__(self, width_mult=1.0):
        super().__init__()
        settings = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 2, 2)]
        input_channel = _make_divisible(32 * width_mult)
        layers = [nn.Conv2d(3, input_channel, 3, 1, 1, bias=False), nn.BatchNorm2d(input_channel),
                  nn.ReLU6(inplace=True)]
        for t, c, n, s in settings:
            output_channel = _make_divisible(c * width_mult)
            for i in range(n):
                layers.append(InvertedResidual(input_channel, output_channel,
                                               s if i == 0 else 1, t))
                input_channel = output_channel
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(input_channel, 10))

    def forward(self, x):
        x = self.features(x)
        x = nn.functional.adaptive_avg_pool2d(x, 1).reshape(x.shape[0], -1)
        return self.classifier(x)
""",
    "lstm-on-rows": HEADER
    + """
class Net(nn.Module):
    def __init__(self, hidden_size=64, num_layers=2, num_classes=10):
        super().__init__()
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.lstm = nn.LSTM(32 * 3, hidden_size, num_layers, batch_first=True,
                            bidirectional=True, dropout=0.1)
        self.fc = nn.Linear(hidden_size * 2, num_classes)
        for name, param in self.lstm.named_parameters():
            if "weight_ih" in name:
                nn.init.xavier_uniform_(param.data)
            elif "bias" in name:
                param.data.fill_(0)
        nn.init.orthogonal_(self.lstm.weight_hh_l0)

    def forward(self, x):
        b = x.size(0)
        seq = x.permute(0, 2, 1, 3).reshape(b, 32, -1)  # rows as time steps
        h0 = torch.zeros(self.num_layers * 2, b, self.hidden_size, device=x.device)
        c0 = torch.zeros_like(h0)
        self.lstm.flatten_parameters()
        out, (hn, cn) = self.lstm(seq, (h0, c0))
        return self.fc(out[:, -1, :])
""",
    "gru-flattened": HEADER
    + """
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(4))
        self.gru = nn.GRU(input_size=8, hidden_size=32, batch_first=True)
        self.out = nn.Linear(32, 10)

    def forward(self, x):
        x = self.conv(x)                       # (B, 8, 8, 8)
        x = x.flatten(2).transpose(1, 2)       # (B, 64, 8): a sequence of 64 steps
        _, h = self.gru(x)
        return self.out(h[-1])
""",
    "vit-tiny": HEADER
    + """
class Net(nn.Module):
    def __init__(self, dim=32, depth=2, heads=4, patch=8, num_classes=10):
        super().__init__()
        self.patch_embed = nn.Conv2d(3, dim, kernel_size=patch, stride=patch)
        num_patches = (32 // patch) ** 2
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, dim))
        layer = nn.TransformerEncoderLayer(d_model=dim, nhead=heads, dim_feedforward=dim * 2,
                                           dropout=0.0, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)

    def forward(self, x):
        b = x.shape[0]
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        cls = self.cls_token.expand(b, -1, -1)
        x = torch.cat((cls, x), dim=1) + self.pos_embed
        x = self.encoder(x)
        return self.head(self.norm(x[:, 0]))
""",
    "attention-by-hand": HEADER
    + """
import math


class SelfAttention(nn.Module):
    def __init__(self, dim, heads=2):
        super().__init__()
        assert dim % heads == 0, "dim must divide into heads"
        self.heads = heads
        self.scale = 1.0 / math.sqrt(dim // heads)
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, d = x.shape
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        q, k, v = (t.reshape(b, n, self.heads, -1).transpose(1, 2) for t in (q, k, v))
        attn = (q @ k.transpose(-2, -1)) * self.scale
        attn = F.softmax(attn, dim=-1)
        out = torch.einsum("bhij,bhjd->bhid", attn, v)
        out = out.transpose(1, 2).contiguous().view(b, n, d)
        return self.proj(out)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Conv2d(3, 16, 4, 4)
        self.attn = SelfAttention(16)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = self.embed(x).flatten(2).permute(0, 2, 1)
        x = x + self.attn(x)
        return self.fc(x.mean(1))
""",
    "positional-encoding-buffer": HEADER
    + """
import math


class PositionalEncoding(nn.Module):
    def __init__(self, d_model, max_len=256):
        super().__init__()
        position = torch.arange(max_len).unsqueeze(1)
        div_term = torch.exp(torch.arange(0, d_model, 2) * (-math.log(10000.0) / d_model))
        pe = torch.zeros(1, max_len, d_model)
        pe[0, :, 0::2] = torch.sin(position * div_term)
        pe[0, :, 1::2] = torch.cos(position * div_term)
        self.register_buffer("pe", pe)

    def forward(self, x):
        return x + self.pe[:, : x.size(1)]


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(3 * 32, 32)
        self.pos = PositionalEncoding(32)
        self.mha = nn.MultiheadAttention(32, 4, batch_first=True)
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        x = x.transpose(1, 2).reshape(x.size(0), 32, -1)
        x = self.pos(self.embed(x))
        x, _ = self.mha(x, x, x, need_weights=False)
        return self.fc(x.mean(dim=1))
""",
    "init-weights-apply": HEADER
    + """
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.GELU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))
        self.apply(self._init_weights)

    @torch.no_grad()
    def _init_weights(self, m):
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                m.bias.zero_()
        elif isinstance(m, nn.BatchNorm2d):
            m.weight.fill_(1.0)
            m.bias.zero_()

    def forward(self, x):
        return self.net(x)
""",
    "dynamic-depth-getattr": HEADER
    + """
class Net(nn.Module):
    def __init__(self, num_blocks=3, width=16):
        super().__init__()
        self.num_blocks = num_blocks
        self.stem = nn.Conv2d(3, width, 3, padding=1)
        for i in range(num_blocks):
            setattr(self, f"block{i}", nn.Sequential(
                nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU()))
            self.add_module("drop_%d" % i, nn.Dropout2d(0.1))
        self.fc = nn.Linear(width, 10)

    def forward(self, x):
        x = self.stem(x)
        for i in range(self.num_blocks):
            x = x + getattr(self, f"block{i}")(x)
            x = getattr(self, "drop_" + str(i))(x)
        x = self.block0[0].weight.new_tensor(1.0) * x
        return self.fc(F.adaptive_avg_pool2d(x, 1).view(x.size(0), -1))
""",
    "inception-branches": HEADER
    + """
class Inception(nn.Module):
    def __init__(self, c_in, c1, c3, c5, cp):
        super().__init__()
        self.branches = nn.ModuleList([
            nn.Conv2d(c_in, c1, 1),
            nn.Sequential(nn.Conv2d(c_in, c3, 1), nn.ReLU(True), nn.Conv2d(c3, c3, 3, padding=1)),
            nn.Sequential(nn.Conv2d(c_in, c5, 1), nn.ReLU(True), nn.Conv2d(c5, c5, 5, padding=2)),
        ])
        self.pool_proj = nn.Conv2d(c_in, cp, 1)

    def forward(self, x):
        outs = [branch(x) for branch in self.branches]
        outs.append(self.pool_proj(F.max_pool2d(x, 3, stride=1, padding=1)))
        return F.relu(torch.cat(outs, dim=1))


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.inc = Inception(16, 8, 8, 4, 4)
        self.fc = nn.Linear(24, 10)

    def forward(self, x):
        x = self.inc(F.relu(self.stem(x)))
        return self.fc(x.mean((2, 3)))
""",
    "partial-norm-factory": HEADER
    + """
from functools import partial
from typing import Callable, Optional


class ConvNormAct(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, stride: int = 1,
                 norm_layer: Optional[Callable[..., nn.Module]] = None,
                 activation: Callable[..., nn.Module] = nn.ReLU) -> None:
        if norm_layer is None:
            norm_layer = nn.BatchNorm2d
        super().__init__(
            nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), norm_layer(c_out), activation())
        self.out_channels = c_out


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        norm = partial(nn.BatchNorm2d, eps=1e-3, momentum=0.01)
        self.body = nn.Sequential(ConvNormAct(3, 16, norm_layer=norm),
                                  ConvNormAct(16, 32, 2, norm_layer=norm, activation=nn.SiLU))
        self.fc = nn.Linear(self.body[-1].out_channels, 10)

    def forward(self, x):
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(self.body(x), 1), 1))
""",
    "activation-table-config": HEADER
    + """
ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "mish": nn.Mish}


class Config:
    width = 24
    activation = "gelu"
    dropout = 0.1

    def __init__(self, depth=2):
        self.depth = depth

    @property
    def channels(self):
        return [self.width * (2 ** i) for i in range(self.depth)]


class Net(nn.Module):
    def __init__(self, config=None):
        super().__init__()
        config = config or Config()
        layers, c_in = [], 3
        for c in config.channels:
            layers += [nn.Conv2d(c_in, c, 3, padding=1), ACTIVATIONS[config.activation](),
                       nn.MaxPool2d(2)]
            c_in = c
        self.features = nn.Sequential(*layers)
        self.dropout = nn.Dropout(p=config.dropout)
        self.classifier = nn.LazyLinear(10)

    def forward(self, x):
        x = self.features(x)
        return self.classifier(self.dropout(torch.flatten(x, start_dim=1)))
""",
    "module-dict-heads": HEADER
    + """
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.trunk = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.ReLU(), nn.Flatten())
        self.heads = nn.ModuleDict({
            "coarse": nn.Linear(16 * 16 * 16, 5),
            "fine": nn.Linear(16 * 16 * 16, 5),
        })

    def forward(self, x):
        features = self.trunk(x)
        outputs = {name: head(features) for name, head in self.heads.items()}
        return torch.cat([outputs[key] for key in sorted(outputs.keys())], dim=-1)
""",
    "depthwise-separable": HEADER
    + """
class DepthwiseSeparable(nn.Module):
    def __init__(self, c_in, c_out, stride=1):
        super().__init__()
        self.depthwise = nn.Conv2d(c_in, c_in, 3, stride, 1, groups=c_in, bias=False)
        self.pointwise = nn.Conv2d(c_in, c_out, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_in, momentum=0.01, eps=1e-3)
        self.bn2 = nn.BatchNorm2d(c_out, momentum=0.01, eps=1e-3)

    def forward(self, x):
        x = F.relu(self.bn1(self.depthwise(x)))
        return F.relu(self.bn2(self.pointwise(x)))


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.Sequential(
            DepthwiseSeparable(3, 32), DepthwiseSeparable(32, 64, 2), DepthwiseSeparable(64, 64, 2))
        self.linear = nn.Linear(64, 10)
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.data.fill_(1)
                m.bias.data.zero_()
            elif isinstance(m, nn.Linear):
                m.weight.data.normal_(0, 0.01)
                m.bias.data.zero_()

    def forward(self, x):
        out = self.layers(x)
        out = F.avg_pool2d(out, out.size()[3])
        return self.linear(out.view(out.size(0), -1))
""",
    "stochastic-depth": HEADER
    + """
def drop_path(x, drop_prob: float = 0.0, training: bool = False):
    if drop_prob == 0.0 or not training:
        return x
    keep_prob = 1 - drop_prob
    shape = (x.shape[0],) + (1,) * (x.ndim - 1)
    random_tensor = x.new_empty(shape).bernoulli_(keep_prob)
    return x.div(keep_prob) * random_tensor


class Block(nn.Module):
    def __init__(self, dim, drop_prob=0.1):
        super().__init__()
        self.conv = nn.Conv2d(dim, dim, 3, padding=1)
        self.norm = nn.GroupNorm(4, dim)
        self.drop_prob = drop_prob

    def forward(self, x):
        return x + drop_path(F.gelu(self.norm(self.conv(x))), self.drop_prob, self.training)


class Net(nn.Module):
    def __init__(self, depth=3):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 4, 4)
        rates = [r.item() for r in torch.linspace(0, 0.2, depth)]
        self.blocks = nn.Sequential(*[Block(16, p) for p in rates])
        self.head = nn.Linear(16, 10)

    def forward(self, x):
        return self.head(self.blocks(self.stem(x)).mean([-2, -1]))
""",
    "gradient-checkpoint": HEADER
    + """
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stage1 = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU())
        self.stage2 = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = self.stage1(x)
        if self.training and x.requires_grad:
            x = torch.utils.checkpoint.checkpoint(self.stage2, x, use_reentrant=False)
        else:
            x = self.stage2(x)
        return self.fc(torch.amax(x, dim=(2, 3)))
""",
    "weight-and-spectral-norm": HEADER
    + """
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.utils.spectral_norm(nn.Conv2d(3, 16, 3, padding=1))
        self.fc = nn.utils.parametrizations.weight_norm(nn.Linear(16, 10))

    def forward(self, x):
        x = F.leaky_relu(self.conv(x), negative_slope=0.2)
        return self.fc(F.adaptive_max_pool2d(x, 1).squeeze(-1).squeeze(-1))
""",
    "future-annotations-tensor": """from __future__ import annotations

import torch
from torch import Tensor, nn


class Residual(nn.Module):
    def __init__(self, fn: nn.Module) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: Tensor) -> Tensor:
        return x + self.fn(x)


class Net(nn.Module):
    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, width, 3, padding=1)
        self.res = Residual(nn.Sequential(nn.ReLU(), nn.Conv2d(width, width, 3, padding=1)))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width, 10)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.pool(self.res(self.stem(x))).flatten(1))
""",
    "itertools-collections": HEADER
    + """
import collections
import itertools


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        branches = collections.OrderedDict()
        for k, d in itertools.product((1, 3), (1, 2)):
            branches[f"k{k}_d{d}"] = nn.Conv2d(3, 4, k, padding=d * (k // 2), dilation=d)
        self.branches = nn.ModuleDict(branches)
        counts = collections.Counter(len(name) for name in branches)
        self.fc = nn.Linear(4 * len(branches) + 0 * sum(counts.values()), 10)

    def forward(self, x):
        ys = [b(x) for b in self.branches.values()]
        y = torch.cat(list(itertools.chain(ys)), 1)
        return self.fc(y.mean(dim=(2, 3)))
""",
    "main-block-and-print": HEADER
    + """
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(4))
        self.fc = nn.Linear(8 * 4 * 4, 10)

    def forward(self, x):
        x = self.features(x)
        return self.fc(x.reshape(x.size(0), -1))


def count_parameters(model):
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


if __name__ == "__main__":
    model = Net()
    out = model(torch.randn(1, 3, 32, 32))
    print(f"output {tuple(out.shape)!r}, {count_parameters(model):,} parameters")
""",
    "generator-helper-sequential-subclass": HEADER
    + """
def stages(widths):
    for c_in, c_out in zip(widths, widths[1:]):
        yield c_in, c_out


class Stem(nn.Sequential):
    def __init__(self, c_out):
        super().__init__(nn.Conv2d(3, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU())

    def forward(self, x):
        return super().forward(x)


class Net(nn.Module):
    def __init__(self, widths=(16, 24, 32)):
        super().__init__()
        self.stem = Stem(widths[0])
        self.stages = nn.ModuleList(
            nn.Sequential(nn.Conv2d(a, b, 3, 2, 1), nn.ReLU()) for a, b in stages(list(widths)))
        self.fc = nn.Linear(widths[-1], 10)

    def forward(self, x):
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return self.fc(x.mean(dim=(2, 3)))
""",
    "channels-last-norms": HEADER
    + """
class LayerNorm2d(nn.LayerNorm):
    def forward(self, x):
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.down = nn.Conv2d(3, 16, 4, 4)
        self.norm = LayerNorm2d(16)
        self.act = nn.GELU(approximate="tanh")
        self.up = nn.Conv2d(16, 16, 3, padding=1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        y = self.act(self.norm(self.down(x)))
        y = F.interpolate(y, scale_factor=2, mode="nearest")
        y = self.up(y)
        y = torch.clamp(y, min=-6.0, max=6.0)
        return self.fc(F.adaptive_max_pool2d(y, 1).flatten(1))
""",
    "fully-spelled-torch-nn": """import torch


class Net(torch.nn.Module):
    def __init__(self):
        torch.nn.Module.__init__(self)
        self.conv = torch.nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.fc = torch.nn.Linear(8 * 16 * 16, 10)
        torch.nn.init.xavier_uniform_(self.conv.weight)
        torch.nn.init.zeros_(self.conv.bias)

    def forward(self, x):
        x = torch.nn.functional.relu(self.conv(x))
        x = x.view(-1, 8 * 16 * 16)
        return torch.nn.functional.log_softmax(self.fc(x), dim=1)
""",
    "parameterlist-and-errors": HEADER
    + """
class ScaledSum(nn.Module):
    def __init__(self, n):
        super().__init__()
        if n < 1:
            raise ValueError(f"need at least one input, got {n}")
        self.scales = nn.ParameterList([nn.Parameter(torch.ones(1)) for _ in range(n)])

    def forward(self, xs):
        try:
            return sum(s * x for s, x in zip(self.scales, xs))
        except RuntimeError as err:
            raise RuntimeError(f"shapes do not match: {err}") from err


class Net(nn.Module):
    def __init__(self, mode="sum"):
        super().__init__()
        if mode not in ("sum",):
            raise NotImplementedError(mode)
        self.a = nn.Conv2d(3, 8, 1)
        self.b = nn.Conv2d(3, 8, 3, padding=1)
        self.mix = ScaledSum(2)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        y = self.mix([self.a(x), self.b(x)])
        del x
        return self.fc(y.mean(dim=(2, 3)))
""",
    "closures-classmethod-walrus": HEADER
    + """
_CALLS = 0


def counted(fn):
    def wrapper(*args, **kwargs):
        global _CALLS
        _CALLS += 1
        return fn(*args, **kwargs)
    return wrapper


def make_scaler(factor):
    total = 0.0

    def scale(t):
        nonlocal total
        total += factor
        return t * factor
    return scale


class Net(nn.Module):
    def __init__(self, width=8):
        super().__init__()
        self.conv = nn.Conv2d(3, width, 3, padding=1)
        self.fc = nn.Linear(width, 10)
        self.scale = make_scaler(0.5)
        self.act = lambda t: F.relu(t)
        self.head = counted(self.fc)

    @classmethod
    def small(cls):
        return cls(width=4)

    def forward(self, input):
        out = self.scale(self.act(self.conv(input)))
        if not isinstance(out, torch.Tensor):
            raise TypeError(f"not a tensor: {out!r}")
        if (n := out.dim()) != 4:
            raise ValueError(n)
        return self.head(out.mean(dim=(2, 3)))
""",
    "torch-fft-linalg": HEADER
    + """
class SpectralConv(nn.Module):
    def __init__(self, channels, modes=4):
        super().__init__()
        self.modes = modes
        scale = 1 / (channels * channels)
        self.weight = nn.Parameter(scale * torch.rand(channels, channels, modes, modes,
                                                      dtype=torch.cfloat))

    def forward(self, x):
        x_ft = torch.fft.rfft2(x)
        out_ft = torch.zeros_like(x_ft)
        out_ft[:, :, : self.modes, : self.modes] = torch.einsum(
            "bixy,ioxy->boxy", x_ft[:, :, : self.modes, : self.modes], self.weight)
        return torch.fft.irfft2(out_ft, s=(x.size(-2), x.size(-1)))


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.lift = nn.Conv2d(3, 8, 1)
        self.spectral = SpectralConv(8)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        x = F.gelu(self.spectral(self.lift(x)))
        x = x / torch.linalg.vector_norm(x, dim=1, keepdim=True).clamp_min(1e-6)
        return self.fc(x.mean(dim=(2, 3)))
""",
}
