"""The InsightFace PyTorch reference networks (arcface_torch layout), for tests and benchmarks.

Written for this project from the published reference structure (arcface_torch's
``iresnet.py`` and ``mobilefacenet.py``: module names, block layout, padding, BN epsilon).
They are the oracle of the ``.pth`` import tests and the other side of every speed
comparison in ``benchmarks/``; nothing in the library uses them. Needs ``torch``
(``pip install "keras-arcface[torch]"``).

Example:
    >>> from keras_arcface.models.torch_reference import torch_reference  # doctest: +SKIP
    >>> net = torch_reference("mbf")  # doctest: +SKIP
"""

try:
    import torch
    from torch import nn
except ImportError as error:  # pragma: no cover - exercised only without torch
    raise ImportError(
        f'The PyTorch reference networks need torch: pip install "keras-arcface[torch]". ({error})'
    ) from error

IRESNET_DEPTHS = {"r18": (2, 2, 2, 2), "r34": (3, 4, 6, 3), "r50": (3, 4, 14, 3)}


class TorchIBasicBlock(nn.Module):
    """arcface_torch ``IBasicBlock``: BN -> conv3x3 -> BN -> PReLU -> conv3x3(stride) -> BN."""

    def __init__(self, in_channels, channels, stride):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels, eps=1e-5)
        self.conv1 = nn.Conv2d(in_channels, channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels, eps=1e-5)
        self.prelu = nn.PReLU(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(channels, eps=1e-5)
        self.downsample = None
        if stride != 1 or in_channels != channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, channels, 1, stride, bias=False),
                nn.BatchNorm2d(channels, eps=1e-5),
            )

    def forward(self, x):
        shortcut = x if self.downsample is None else self.downsample(x)
        y = self.prelu(self.bn2(self.conv1(self.bn1(x))))
        return self.bn3(self.conv2(y)) + shortcut


class TorchIResNet(nn.Module):
    """arcface_torch ``IResNet`` with the "E" head (BN -> dropout -> FC -> BN1d)."""

    def __init__(self, depths, num_features=512):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64, eps=1e-5)
        self.prelu = nn.PReLU(64)
        in_channels = 64
        for stage, (depth, width) in enumerate(zip(depths, (64, 128, 256, 512)), 1):
            blocks = [TorchIBasicBlock(in_channels, width, 2)]
            blocks += [TorchIBasicBlock(width, width, 1) for _ in range(depth - 1)]
            setattr(self, f"layer{stage}", nn.Sequential(*blocks))
            in_channels = width
        self.bn2 = nn.BatchNorm2d(512, eps=1e-5)
        self.dropout = nn.Dropout(p=0.0)
        self.fc = nn.Linear(512 * 7 * 7, num_features)
        self.features = nn.BatchNorm1d(num_features, eps=1e-5)

    def forward(self, x):
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.dropout(torch.flatten(self.bn2(x), 1))
        return self.features(self.fc(x))


class TorchConvBlock(nn.Module):
    """arcface_torch ``ConvBlock``: conv -> BN (-> PReLU)."""

    def __init__(self, in_c, out_c, kernel=1, stride=1, padding=0, groups=1, activation=True):
        super().__init__()
        modules = [
            nn.Conv2d(in_c, out_c, kernel, stride, padding, groups=groups, bias=False),
            nn.BatchNorm2d(out_c),
        ]
        if activation:
            modules.append(nn.PReLU(out_c))
        self.layers = nn.Sequential(*modules)

    def forward(self, x):
        return self.layers(x)


class TorchDepthWise(nn.Module):
    """arcface_torch ``DepthWise``: expand 1x1 -> depthwise 3x3 -> linear 1x1 (+ input)."""

    def __init__(self, in_c, out_c, residual, stride, groups):
        super().__init__()
        self.residual = residual
        self.layers = nn.Sequential(
            TorchConvBlock(in_c, groups),
            TorchConvBlock(groups, groups, 3, stride, 1, groups=groups),
            TorchConvBlock(groups, out_c, activation=False),
        )

    def forward(self, x):
        return x + self.layers(x) if self.residual else self.layers(x)


class TorchResidual(nn.Module):
    """arcface_torch ``Residual``: ``num_block`` residual ``DepthWise`` blocks."""

    def __init__(self, channels, num_block, groups):
        super().__init__()
        blocks = [TorchDepthWise(channels, channels, True, 1, groups) for _ in range(num_block)]
        self.layers = nn.Sequential(*blocks)

    def forward(self, x):
        return self.layers(x)


class TorchGDC(nn.Module):
    """arcface_torch ``GDC`` head: depthwise 7x7 -> BN -> flatten -> FC -> BN1d."""

    def __init__(self, num_features):
        super().__init__()
        self.layers = nn.Sequential(
            TorchConvBlock(512, 512, 7, 1, 0, groups=512, activation=False),
            nn.Flatten(),
            nn.Linear(512, num_features, bias=False),
            nn.BatchNorm1d(num_features),
        )

    def forward(self, x):
        return self.layers(x)


class TorchMobileFaceNet(nn.Module):
    """The reference "mbf" (scale 2, blocks (1, 4, 6, 2))."""

    def __init__(self, num_features=512):
        super().__init__()
        self.layers = nn.ModuleList(
            [
                TorchConvBlock(3, 128, 3, 2, 1),
                TorchConvBlock(128, 128, 3, 1, 1, groups=64),
                TorchDepthWise(128, 128, False, 2, 128),
                TorchResidual(128, 4, 128),
                TorchDepthWise(128, 256, False, 2, 256),
                TorchResidual(256, 6, 256),
                TorchDepthWise(256, 256, False, 2, 512),
                TorchResidual(256, 2, 256),
            ]
        )
        self.conv_sep = TorchConvBlock(256, 512)
        self.features = TorchGDC(num_features)

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return self.features(self.conv_sep(x))


def randomize(model, seed):
    """Random weights with non-trivial BN statistics and PReLU slopes; returns it in eval mode.

    Args:
        model: a reference network.
        seed: seed of the weights.
    """
    generator = torch.Generator().manual_seed(seed)

    def uniform(tensor, low, high):
        tensor.copy_(low + (high - low) * torch.rand(tensor.shape, generator=generator))

    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                fan_in = module.weight[0].numel()
                module.weight.copy_(
                    torch.randn(module.weight.shape, generator=generator) * (2.0 / fan_in) ** 0.5
                )
                if module.bias is not None:
                    uniform(module.bias, -0.2, 0.2)
            elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
                uniform(module.weight, 0.5, 1.5)
                uniform(module.bias, -0.3, 0.3)
                uniform(module.running_mean, -0.3, 0.3)
                uniform(module.running_var, 0.5, 2.0)
            elif isinstance(module, nn.PReLU):
                uniform(module.weight, 0.05, 0.45)
    return model.eval()


def torch_reference(arch, num_features=512):
    """The reference network of ``arch`` ("mbf", "r18", "r34" or "r50"), default weights.

    Args:
        arch: architecture name.
        num_features: embedding size. Default 512.
    """
    if arch == "mbf":
        return TorchMobileFaceNet(num_features)
    if arch in IRESNET_DEPTHS:
        return TorchIResNet(IRESNET_DEPTHS[arch], num_features)
    raise ValueError(
        f"Expected one of {['mbf', *IRESNET_DEPTHS]} for the PyTorch reference. "
        f"Received: arch={arch!r}"
    )
