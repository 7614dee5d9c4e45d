"""Training data from a run's trajectory records, in the formats trainers load.

- `sft`: TRL's conversational SFT rows (`messages`, `tools`) of the passing rollouts;
- `dpo`: TRL's conversational preference rows (`prompt`, `chosen`, `rejected`), best against
  worst sample of each prompt whose samples differ in reward;
- `tokens`: token-level rows (input ids, assistant loss mask, logprobs, reward, advantage,
  policy version) for RL trainers, when the endpoint returned token ids;
- `atif`: one ATIF v1.7 trajectory per record (`atif.to_atif`, reusable on its own).

Every export reads the same records (`source.RunOutput`): one per (row, sample), the best
commit of each (`runtime.shards.read_all_records`). Masked records (infrastructure failures) and
invalid ones (unusable dataset rows) are never exported: they say nothing about the policy.
"""
