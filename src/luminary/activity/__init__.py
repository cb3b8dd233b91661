"""ARIC: activity recognition in classroom surveillance images, with continual learning.

Modules: ``layout`` (the released folder), ``synth`` (a synthetic ARIC in that
layout), ``protocols`` (joint, class-incremental, few-shot), ``methods``
(the registry) and ``learner`` (one learner trained through luminary.train),
``fusion`` (image, audio, text), ``metrics``, ``plots``, ``run`` (the
comparison a config asks for), ``export`` (Avalanche and PyCIL). See
docs/activity.md.
"""
