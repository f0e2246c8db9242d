"""Flows that chain the stages: the demo (:func:`evalbench.flows.demo.run_demo`)."""
