"""Datasets and loaders built from a Recipe.

`vittui.data.sources.build_data(recipe)` returns a `DataBundle` (datasets, loaders, class names and
counts, mixup) from the pieces in `readers`, `dataset`, `samplers` and `splits`;
`vittui.data.transforms` holds the timm transforms, mixup and class weights. Sources: scikit-learn
digits, ImageFolder trees, MedMNIST `.npz` files and Hugging Face datasets. Unreadable images are
skipped and counted, never fatal. Nothing heavy is imported here.
"""
