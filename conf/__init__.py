"""contnet's Hydra config tree (conf/<group>/<name>.yaml).  Importing it (Hydra does, for pkg://contnet.conf)
puts every registered option's typed config into Hydra's ConfigStore at schema/<group>/<name>, the schema
each YAML names in its defaults list (contnet/schema.py)."""
from contnet.schema import store as _store

_store()
