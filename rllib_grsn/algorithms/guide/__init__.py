"""Guided training of spiking actors: a jump-start guide (JSRL) and behaviour cloning on its actions
(TD3+BC), for recurrent TD3. Settings in :mod:`.settings`, guides in :mod:`.policies`, the acting in
:mod:`.connector`, the pre-flight check in :mod:`.checks`, an example privileged guide in
:mod:`.privileged`."""

from rllib_grsn.algorithms.guide.settings import GUIDED, GuideSettings, guide_settings

__all__ = ["GUIDED", "GuideSettings", "guide_settings"]
