"""Guided training of spiking actors: a jump-start guide (JSRL) and behaviour cloning on its actions
(TD3+BC), for recurrent TD3 and continuous SAC. Settings in :mod:`.settings`, guides in
:mod:`.policies`, the acting in :mod:`.connector`, the pre-flight check in :mod:`.checks`, an example
privileged guide in :mod:`.privileged`."""

from rllib_grsn.algorithms.guide.settings import (
    ABLATION_NAMES,
    BC_LABEL,
    GUIDE_ACTION,
    GUIDED,
    GuideSettings,
    guide_settings,
)

__all__ = ["ABLATION_NAMES", "BC_LABEL", "GUIDED", "GUIDE_ACTION", "GuideSettings", "guide_settings"]
