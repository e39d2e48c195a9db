"""`contnet reproduce` (`make reproduce-paper`): every paper claim's sweeps, their reports and REPORT.md.

    claims.py   the claims: their presets (conf/experiment/), published numbers and verdicts
    driver.py   plans and runs the sweeps (one process each), the command line
    report.py   REPORT.md: our numbers beside the published ones (formatting: contnet.report.render)
"""
from contnet.reproduce.claims import CLAIMS, Claim, Sweep, claim_by_key, compare
from contnet.reproduce.driver import SweepRun, describe, equivalence_check, main, plan
from contnet.reproduce.report import ClaimResult, analyse, write_report

__all__ = ["CLAIMS", "Claim", "ClaimResult", "Sweep", "SweepRun", "analyse", "claim_by_key", "compare", "describe",
           "equivalence_check", "main", "plan", "write_report"]
