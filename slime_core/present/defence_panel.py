"""The Defences page's words and tables for one measured strength: every number comes from a row of
`experiments.defence_curves.measure` (and the undefended reference); nothing is measured here."""

from __future__ import annotations

from slime_core.present.tables import fmt_strength
from slime_core.stages.defences import defence_spec


def linear_warning(defence: str) -> str | None:
    if not defence_spec(defence).refit_absorbs:  # a keyed linear map: the refitting attacker absorbs it
        return None
    return (f"**{defence}** is a linear map of the embeddings: an attacker who fits its alignment on leaked "
            f"defended pairs absorbs it (least squares recovers a rotation or permutation exactly), so leakage "
            f"is (nearly) unchanged. It only stops an attacker reusing a map fitted on undefended embeddings.")


def non_adaptive_note(row: dict) -> str | None:
    na = row["leakage"].get("non_adaptive") or {}
    if not na.get("applicable"):
        return None
    nd = na["neighbourhood_f1_vs_frequent"]
    return (f"An attacker whose N pairs leaked *before* the defence (it keeps its old map): neighbourhood F1 "
            f"{na['neighbourhood_f1']:.3f}, {nd['diff']:+.3f} [{nd['ci_low']:+.3f}, {nd['ci_high']:+.3f}] vs the "
            f"prior. The numbers below are the adaptive attacker's, who refits on defended pairs.")


def noise_note(row: dict) -> str | None:
    info = row["defence_info"]
    if "noise_scale" not in info:
        return None
    return (f"Noise scale per coordinate at this strength: {info['noise_scale']:.4g}"
            + (f" (delta {info['delta']:g}, {info['calibration']} calibration)" if "delta" in info else ""))


def setting_note(row: dict) -> str:
    return (f"Victim {row['victim']} -> attacker {row['attacker']}, N={row['n_align']} defended pairs, k={row['k']}, "
            f"{row['n_images']} test images, released dimension {row['released_dim']}.")


def metric_cards(row: dict, undefended: dict) -> list[dict]:
    """Keyword arguments of `st.metric`: leakage beside the prior, utility beside the undefended embeddings."""
    lk, ut, base = row["leakage"], row["utility"], row["baselines"]["frequent"]
    u0 = undefended["utility"]
    cards = [{"label": "Alignment cosine", "value": f"{lk['alignment_cosine']:.3f}",
              "delta": f"{lk['alignment_cosine'] - base['alignment_cosine']:+.3f} vs prior", "delta_color": "off",
              "help": f"95% CI [{lk['alignment_cosine_ci'][0]:.3f}, {lk['alignment_cosine_ci'][1]:.3f}]; prior = "
                      f"cosine of the mean public embedding, {base['alignment_cosine']:.3f}"}]
    for key, label in (("exact_f1", "Tag F1 (exact)"), ("neighbourhood_f1", "Neighbourhood F1")):
        dv = lk[f"{key}_vs_frequent"]
        cards.append({"label": label, "value": f"{lk[key]:.3f}", "delta": f"{dv['diff']:+.3f} vs prior",
                      "delta_color": "inverse",
                      "help": f"95% CI [{lk[key + '_ci'][0]:.3f}, {lk[key + '_ci'][1]:.3f}]; difference to the k most "
                              f"frequent tags ({base[key]:.3f}): 95% CI [{dv['ci_low']:+.3f}, {dv['ci_high']:+.3f}]"})
    for r in (1, 5):
        key = f"recall_at_{r}"
        cards.append({"label": f"Utility: recall@{r}", "value": f"{ut[key]:.3f}", "delta": f"{ut[key] - u0[key]:+.3f}"})
    if "zero_shot_tag_f1" in ut:
        cards.append({"label": "Utility: the owner's zero-shot tagging (exact F1)", "value": f"{ut['zero_shot_tag_f1']:.3f}",
                      "delta": f"{ut['zero_shot_tag_f1'] - u0['zero_shot_tag_f1']:+.3f}",
                      "help": "The victim's own text tower tags its defended embeddings (top-k over the test tags)."})
    return cards


def leakage_rows(row: dict) -> list[dict]:
    """One row per leakage measure: attack value and interval, prior, paired difference and its interval."""
    lk, base = row["leakage"], row["baselines"]["frequent"]
    table = [{"leakage": "alignment cosine", "attack": lk["alignment_cosine"], "ci_low": lk["alignment_cosine_ci"][0],
              "ci_high": lk["alignment_cosine_ci"][1], "prior": base["alignment_cosine"],
              "difference": lk["alignment_cosine"] - base["alignment_cosine"], "diff_ci_low": None,
              "diff_ci_high": None}]
    for key, label in (("exact_f1", "tag F1 (exact)"), ("neighbourhood_f1", "neighbourhood F1")):
        dv = lk[f"{key}_vs_frequent"]
        table.append({"leakage": label, "attack": lk[key], "ci_low": lk[f"{key}_ci"][0], "ci_high": lk[f"{key}_ci"][1],
                      "prior": base[key], "difference": dv["diff"], "diff_ci_low": dv["ci_low"],
                      "diff_ci_high": dv["ci_high"]})
    if "caption_rouge_l" in lk:
        for prior in ("random_caption", "mean_embedding_caption"):
            dv = lk[f"caption_rouge_l_vs_{prior}"]
            table.append({"leakage": f"caption ROUGE-L ({lk['caption_writer']}) vs {prior.replace('_', ' ')}",
                          "attack": lk["caption_rouge_l"], "ci_low": lk["caption_rouge_l_ci"][0],
                          "ci_high": lk["caption_rouge_l_ci"][1], "prior": row["baselines"][prior]["caption_rouge_l"],
                          "difference": dv["diff"], "diff_ci_low": dv["ci_low"], "diff_ci_high": dv["ci_high"]})
    return table


NUMBER_COLUMNS = ("attack", "ci_low", "ci_high", "prior", "difference", "diff_ci_low", "diff_ci_high")
TABLE_NOTE = ("prior = the k most frequent training tags for the F1s (no embedding needed), the mean public "
              "embedding for the cosine and, for ROUGE-L, a random public caption and the caption written from the mean "
              "public embedding (the stronger prior); difference = attack - prior, paired over images, with its bootstrap "
              "95% interval (the cosine's interval is on the attack value only).")


def verdict(row: dict) -> str:
    """Streamlit markdown: red when neighbourhood F1 is still significantly above the prior, green otherwise."""
    nb, r1 = row["leakage"]["neighbourhood_f1_vs_frequent"], row["utility"]["recall_at_1"]
    if nb["ci_low"] > 0:
        return (f":red[**Still leaking:** neighbourhood F1 is above the prior by {nb['diff']:+.3f} "
                f"(95% CI [{nb['ci_low']:+.3f}, {nb['ci_high']:+.3f}]) at recall@1 {r1:.2f}.]")
    return (f":green[**No measurable tag leak:** neighbourhood F1 is not significantly above the prior "
            f"(95% CI of the difference [{nb['ci_low']:+.3f}, {nb['ci_high']:+.3f}] reaches 0)] - at the "
            f"cost of utility recall@1 {r1:.2f}.")


def curve_note(rows: list[dict]) -> str:
    knee = next((r for r in rows if r.get("knee")), None)
    stop = next((r for r in rows if r.get("stops_leak")), None)
    return ((f"Knee (where the trade-off bends): strength {fmt_strength(knee['strength'])}. " if knee else "")
            + (f"The leak stops being measurable from strength {fmt_strength(stop['strength'])}, at recall@1 "
               f"{stop['utility']['recall_at_1']:.2f}." if stop else "No strength here stops the measurable leak."))
