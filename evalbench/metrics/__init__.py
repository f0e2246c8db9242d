"""Metrics by name (lazy). Each metric's name carries the encoder it was computed with."""

from persona.registry import Registry

METRICS = Registry("metric", {
    "text_preference": "evalbench.metrics.preference:TextPreference",
    "diversity": "evalbench.metrics.single_image:Diversity",
    "single_image_fd": "evalbench.metrics.single_image:SingleImageFD",
    "copy_rate": "evalbench.metrics.single_image:CopyRate",
    "cmmd": "evalbench.metrics.distribution:CMMD",
    "image_preference": "evalbench.metrics.distribution:ImagePreference",
    "prompt_alignment": "evalbench.metrics.fidelity:PromptAlignment",
})
