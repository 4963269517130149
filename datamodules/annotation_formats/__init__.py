"""Annotation readers, one module per file format; all return `datamodules.annotations` records.

| file format                                           | module and reader                      |
|-------------------------------------------------------|----------------------------------------|
| ActivityNet v1.3, THUMOS14 ActionFormer JSON, ours    | `activitynet.read_activitynet`         |
| ActivityNet results format (predictions)              | `activitynet.read_activitynet_results` |
| THUMOS14 original per-class txt                       | `thumos14.read_thumos14_txt`           |
| MultiTHUMOS JSON                                      | `multithumos.read_multithumos`         |
| Toyota Smarthome Untrimmed (TSU) JSON                 | `tsu.read_tsu`                         |
| Charades CSV (and the synthetic per-subset CSVs)      | `charades.read_charades`               |
| EPIC-KITCHENS-100 CSV                                 | `epic_kitchens.read_epic_kitchens`     |
| Something-Something V2 JSON                           | `something_something.read_...`         |
| PKU-MMD label folder                                  | `pku_mmd.read_pku_mmd`                 |

Import the readers from `datamodules.annotations`; `read_annotations` picks one by name.
"""

# The format modules import the record model from `datamodules.annotations`, which re-exports
# them; loading the model first keeps that cycle safe whichever module is imported first.
import datamodules.annotations  # noqa: F401
