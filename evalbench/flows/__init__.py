"""Flows that chain the stages, one call each for the apps: the demo (:mod:`.demo`), cold start and its curve
(:mod:`.coldstart`), images from stored rewrites (:mod:`.draw`), patch-generator variations (:mod:`.variations`)
and galleries (:mod:`.gallery`), the injection check (:mod:`.injection`), and run reports (:mod:`.reports`)."""
