"""BertNet: harvest knowledge tuples of a user-defined relation from a language model.

A relation is a prompt with entity slots (``<ENT0> can <ENT1>``) and a few seed
tuples. :func:`harvest` paraphrases the prompt, weighs the prompts by how well
they separate the seeds from corrupted seeds, searches the model for the
tuples that fill every weighted prompt best, and rescores them. The formulas
and defaults are those of ``specs/bertnet.md`` (Hao et al., ACL Findings 2023).
"""

from luminary.harvest.relations import Relation, RelationSet, load_relations
from luminary.harvest.over_training import harvest_checkpoints
from luminary.harvest.precision import precision_at
from luminary.harvest.run import HarvestConfig, harvest, harvest_relation

__all__ = ["HarvestConfig", "Relation", "RelationSet", "harvest", "harvest_checkpoints", "harvest_relation",
           "load_relations", "precision_at"]
