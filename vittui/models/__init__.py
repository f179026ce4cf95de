"""Models: the catalogue of known variants, building networks (timm or transformers, pretrained or from
config), adapting them (heads, freezing, LoRA). Recommending one is `vittui.planning.select`.

Import the submodules you need (`vittui.models.build`, `vittui.models.adapt`); this package file imports
nothing heavy so that `import vittui.models` costs nothing.
"""
