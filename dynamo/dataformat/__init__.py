"""The inventory object model: one entity per module, ``__slots__``, enums, no I/O.

Every ``repr`` evaluates back to an equal object with these names in scope.
"""

from dynamo.dataformat.block import Block
from dynamo.dataformat.blockreplica import BlockReplica
from dynamo.dataformat.dataset import Dataset, DatasetStatus, DataType
from dynamo.dataformat.datasetreplica import DatasetReplica
from dynamo.dataformat.file import File
from dynamo.dataformat.group import Group, OwnershipLevel
from dynamo.dataformat.partition import Partition
from dynamo.dataformat.site import Site, SiteStatus, StorageType
from dynamo.dataformat.sitepartition import UNLIMITED, SitePartition

__all__ = [
    "Block", "BlockReplica", "Dataset", "DatasetReplica", "DatasetStatus", "DataType", "File",
    "Group", "OwnershipLevel", "Partition", "Site", "SitePartition", "SiteStatus", "StorageType",
    "UNLIMITED",
]

OBJECT_TYPES = (Site, Group, Partition, SitePartition, Dataset, Block, File, DatasetReplica, BlockReplica)
