"""The class names of the MedMNIST sets vittui knows, by the prefix of the .npz file name (pure Python: the
script exporter reads them too)."""

from __future__ import annotations

MEDMNIST_CLASSES: dict[str, list[str]] = {
    "pneumoniamnist": ["normal", "pneumonia"],
    "bloodmnist": [
        "basophil", "eosinophil", "erythroblast", "immature granulocytes",
        "lymphocyte", "monocyte", "neutrophil", "platelet",
    ],
}


__all__ = ["MEDMNIST_CLASSES"]
