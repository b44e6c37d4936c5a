"""The inventory object model: one entity per module, ``__slots__``, enums, no I/O.

Every ``repr`` evaluates back to an equal object with these names in scope. The original
Dynamo's names (``Configuration``, ``ObjectError``, ``IntegrityError``, ...) are here too;
see docs/migrating.md.
"""

from dynamo.dataformat.block import Block
from dynamo.dataformat.blockreplica import BlockReplica
from dynamo.dataformat.condition import Condition
from dynamo.dataformat.configuration import Configuration
from dynamo.dataformat.dataset import Dataset, DatasetStatus, DataType
from dynamo.dataformat.datasetreplica import DatasetReplica
from dynamo.dataformat.file import File
from dynamo.dataformat.group import Group, OwnershipLevel
from dynamo.dataformat.partition import Partition
from dynamo.dataformat.site import FileNameMapping, Site, SiteStatus, StorageType
from dynamo.dataformat.sitepartition import UNLIMITED, SitePartition
from dynamo.errors import ConfigurationError, IntegrityError, ObjectError

__all__ = [
    "Block", "BlockReplica", "Condition", "Configuration", "ConfigurationError", "Dataset", "DatasetReplica",
    "DatasetStatus", "DataType", "File", "FileNameMapping", "Group", "IntegrityError", "ObjectError",
    "OwnershipLevel", "Partition", "Site", "SitePartition", "SiteStatus", "StorageType", "UNLIMITED",
]

OBJECT_TYPES = (Site, Group, Partition, SitePartition, Dataset, Block, File, DatasetReplica, BlockReplica)
