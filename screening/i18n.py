"""The languages nlc-screen speaks to screeners: English and (draft) Simplified Chinese.

Two kinds of text are translated:

* a pack's own texts (criterion titles, reason templates, what the investigator decides, box
  labels, questions, field labels, warnings) are written in the pack, in both languages, as
  ``{en: ..., zh: ...}`` beside the English they translate; :func:`localized` reads them;
* the tool's own words (the text report's headings and statuses, the answer formats, and the few
  phrases the generic derivations put into reasons) are :data:`MESSAGES` and :data:`PHRASES` below.

A value that reasons quote is a :class:`Phrase` when it is words rather than a date, a number or
a value of the record: a ``str`` holding the English, that also knows its other languages, so the
English path pays nothing for the translation.

Keys, statuses, field paths and record values stay English in every language (they are the
interface that forms, exports and audits read). Record-level error messages stay English too.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

#: The languages every translated text is written in; the first is the default and the fallback.
LANGUAGES = ("en", "zh")
DEFAULT_LANG = "en"
#: The environment variable that sets the default language of the command line.
LANG_ENV = "NLC_SCREEN_LANG"

#: The review mark of the tool's own Chinese texts (the packs' carry their own).
DRAFT_NOTE = {"zh": "中文文本为草稿，尚待母语为中文的临床人员审校 (draft: needs review by a native Chinese clinical speaker)"}


class Phrase(str):
    """Words for a reason or warning: the English text (its ``str`` value) and its other languages."""

    texts: Mapping[str, str]

    def __new__(cls, texts: Mapping[str, str]) -> Phrase:
        obj = super().__new__(cls, texts[DEFAULT_LANG])
        obj.texts = texts
        return obj

    def __reduce__(self) -> tuple[Any, ...]:  # rows cross process boundaries in parallel runs
        return (Phrase, (dict(self.texts),))

    def say(self, lang: str) -> str:
        return self.texts.get(lang) or str.__str__(self)


def say(value: Any, lang: str) -> Any:
    """``value`` in ``lang`` when it is a :class:`Phrase`; anything else as it is."""
    return value.say(lang) if lang != DEFAULT_LANG and isinstance(value, Phrase) else value


def plain(value: str, lang: str = DEFAULT_LANG) -> str:
    """A text in ``lang`` as a plain ``str`` (what a decision row holds)."""
    return value.say(lang) if isinstance(value, Phrase) else value


#: The generic phrases derivations put into reasons and warnings, by key.
PHRASES: dict[str, dict[str, str]] = {
    "unknown": {"en": "unknown", "zh": "不详"},
    "list_separator": {"en": ", ", "zh": "、"},
    "ongoing": {"en": "ongoing", "zh": "仍在服用"},
    "ongoing_clear": {"en": "it is ongoing: it counts until it is stopped (and any look-back after that has passed)",
                      "zh": "仍在服用：停药且其后的回顾期过去之前一直计入"},
    "last_taken": {"en": "last taken {date}", "zh": "最后一次服用于 {date}"},
    "clear_from": {"en": "it would no longer count from enrollment {date}",
                   "zh": "入组日期在 {date} 或之后则不再计入"},
    "no_stop_date": {"en": "with no stop date and not marked ongoing", "zh": "没有停药日期，也未标注仍在服用"},
    "outside_lookback": {"en": "outside the look-back", "zh": "在回顾期之外"},
    "drug": {"en": "({drug})", "zh": "（{drug}）"},
    "outside_window": {"en": "; {count} outside the window ignored ({dates})",
                       "zh": "；窗口外的 {count} 次不计（{dates}）"},
    "planned_date": {"en": " (planned: {base} + {days} days)", "zh": "（计划日期：{base} + {days} 天）"},
}


def phrase(key: str, **values: Any) -> Phrase:
    """The phrase ``key`` with its ``{placeholders}`` filled, in every language."""
    texts = PHRASES[key]
    if not values:
        return Phrase(texts)
    return Phrase({lang: text.format(**values) for lang, text in texts.items()})


def joined(items: list[Any]) -> Phrase:
    """Items (phrases or plain words) joined as a list is written in each language."""
    return Phrase({lang: PHRASES["list_separator"][lang].join(str(say(i, lang)) for i in items)
                   for lang in LANGUAGES})


#: The text report's own words, by key and language.
MESSAGES: dict[str, dict[str, str]] = {
    "eligible": {"en": "ELIGIBLE", "zh": "符合入选条件"},
    "excluded": {"en": "EXCLUDED", "zh": "排除"},
    "undetermined": {"en": "UNDETERMINED", "zh": "尚无法判定"},
    "error": {"en": "ERROR", "zh": "错误"},
    "cannot_read": {"en": "ERROR — the record cannot be read", "zh": "错误 — 无法读取该记录"},
    "waiting_for": {"en": "{category}: waiting for {id} {title}", "zh": "{category}：等待 {id} {title}"},
    "all_met": {"en": "{done}every criterion met, next CONSORT box: {box}",
                "zh": "{done}所有标准均满足，CONSORT 流程下一步：{box}"},
    "because": {"en": "because {id} {title}: {reason}", "zh": "原因：{id} {title}：{reason}"},
    "unknown_ids": {"en": "? unknown: {ids}", "zh": "? 不详：{ids}"},
    "ask_next": {"en": "ask next:", "zh": "接下来请询问："},
    "sep": {"en": ": ", "zh": "："},
    "semi": {"en": "; ", "zh": "；"},
    "answer": {"en": "answer: {format}", "zh": "回答：{format}"},
    "other_set": {"en": "other criteria set: ", "zh": "另一版标准："},
    "warning": {"en": "warning: {text}", "zh": "警告：{text}"},
    "decide": {"en": "investigator decides: {text}", "zh": "由研究者决定：{text}"},
    "legend": {"en": "criteria (+ passes, x rules the candidate out, ? unknown, ! investigator to review):",
               "zh": "各项标准（+ 通过，x 据此排除，? 不详，! 需研究者判断）："},
    "stamp": {"en": "rules: {name} {version} (sha256 {sha}…)", "zh": "标准：{name} {version}（sha256 {sha}…）"},
    "draft": {"en": "", "zh": DRAFT_NOTE["zh"]},
    # the duplicate check's warnings on a second record for a candidate in one batch
    "duplicate_second": {"en": "a second record for candidate {cid} at site {site} in this batch (first at {first})",
                         "zh": "本批中候选人 {cid}（中心 {site}）的第二条记录（第一条在 {first}）"},
    "duplicate_near": {"en": "candidate {cid} at site {site} matches an earlier record in this batch once case and "
                             "surrounding spaces are ignored (first at {first}): the same candidate typed differently, "
                             "or two candidates?",
                       "zh": "忽略大小写和首尾空格后，候选人 {cid}（中心 {site}）与本批中较早的一条记录相同（第一条在 "
                             "{first}）：是同一候选人的不同写法，还是两名候选人？"},
    "duplicate_no_site": {"en": "(none)", "zh": "（无）"},
    "duplicate_earlier_row": {"en": "an earlier row", "zh": "较早的一行"},
    # the audit report
    "audit_title": {"en": "CONSORT enrollment — counted with {name} {version}; decisions from {stamps}",
                    "zh": "CONSORT 入组流程 — 按 {name} {version} 计数；决定来自 {stamps}"},
    "audit_no_rows": {"en": "no rows", "zh": "无记录"},
    "pending_awaiting": {"en": "Eligible, awaiting consent", "zh": "符合条件，等待知情同意"},
    "pending_undetermined": {"en": "Undetermined", "zh": "尚无法判定"},
    "pending_more": {"en": "… and {n} more question(s)", "zh": "……另有 {n} 个问题"},
    "pending_tally": {"en": "Most often open (candidates):", "zh": "最常未决的问题（候选人数）："},
    "audit_refused": {"en": "NOT A VALID COUNT: {problems}", "zh": "计数无效：{problems}"},
    "audit_by": {"en": "Candidates by {field}", "zh": "按 {field} 分组的候选人"},
    "audit_assessed": {"en": "Assessed for eligibility", "zh": "接受资格评估"},
    "audit_excluded": {"en": "Excluded", "zh": "排除"},
    "audit_errors": {"en": "Records that could not be read (not assessed)", "zh": "无法读取的记录（未评估）"},
    "audit_rows": {"en": "Rows read (each candidate counts once: its last row)",
                   "zh": "读取的行数（每名候选人只计一次：其最后一行）"},
    "audit_superseded": {"en": "Superseded by a later row for the same candidate",
                         "zh": "被同一候选人后来的行取代"},
    "audit_arithmetic": {"en": "Arithmetic: ", "zh": "算术核对："},
    "audit_consistent": {"en": "consistent", "zh": "一致"},
    "audit_per_criterion": {
        "en": "Per criterion (precedence order)      met  not_met  unknown  review   excluded: first  only   any"
              "   pending: first",
        "zh": "各项标准（按优先顺序）                met  not_met  unknown  review   排除：首要       唯一   任一"
              "   待定：首个"},
    "audit_per_criterion_legend": {
        "en": "  met … review: candidates by the criterion's status. Excluded — first: the excluded candidates whose\n"
              "  box this criterion decided (their first failing criterion in precedence order; the column adds up\n"
              "  to Excluded); only: failing this criterion and no other; any: failing it whatever else they fail\n"
              "  (a candidate counts under every criterion it fails). Pending — first: undetermined candidates\n"
              "  whose first open criterion this is.",
        "zh": "  met … review：按该标准状态统计的候选人数。排除 — 首要：由该标准决定排除类别的候选人\n"
              "  （按优先顺序第一个未通过的标准；该列合计等于排除总数）；唯一：仅未通过该标准；任一：未通过\n"
              "  该标准的全部候选人（未通过多项者在每一项下各计一次）。待定 — 首个：该标准是其第一个未决标准\n"
              "  的尚无法判定候选人。"},
    "attrition_title": {"en": "Attrition in precedence order: {n} assessed",
                        "zh": "按优先顺序的逐项剔除：共评估 {n} 人"},
    "attrition_group": {"en": "{field} {value}: {n} assessed", "zh": "{field} {value}：共评估 {n} 人"},
    "attrition_head": {"en": "  step criterion                                  removed  remaining     only      any",
                       "zh": "  步骤 标准                                         剔除       剩余     唯一     任一"},
    "attrition_total": {"en": "  excluded {excluded}; not excluded by any criterion {remaining}",
                        "zh": "  共排除 {excluded} 人；未被任何标准排除 {remaining} 人"},
    "attrition_check": {"en": "does not add up: {problem}", "zh": "不一致：{problem}"},
    "attrition_legend": {
        "en": "removed: candidates whose first failing criterion (in precedence order) this is; remaining: "
              "candidates left after it.\nonly: failing this criterion and no other (dropping it would let them "
              "through); any: failing it whatever else they fail\n(a candidate counts under every criterion it "
              "fails, so the column can add up to more than the excluded).",
        "zh": "剔除：按优先顺序第一个未通过该标准的候选人；剩余：经该步后剩下的候选人。\n唯一：仅未通过该标准"
              "（若取消该标准，这些人即可通过）；任一：未通过该标准的全部候选人\n（未通过多项者在每一项下各计一次，"
              "故该列合计可多于排除人数）。"},
    "audit_differs": {"en": "expected {want}  <-- differs", "zh": "应为 {want}  <-- 不一致"},
    "audit_compared_diff": {"en": "Compared with {title}: {n} difference(s)", "zh": "与 {title} 比较：{n} 处不一致"},
    "audit_diff": {"en": "{box}: expected {want}, got {got}", "zh": "{box}：应为 {want}，实为 {got}"},
    "audit_compared_ok": {"en": "Compared with {title}: all {n} counts match", "zh": "与 {title} 比较：全部 {n} 项计数一致"},
    # the HTML report (audit --report)
    "report_title": {"en": "Screening report — {title}", "zh": "筛选报告 — {title}"},
    "report_source": {"en": "Decisions: {source}; {rows} rows read, {superseded} superseded by a later row.",
                      "zh": "决定来源：{source}；读取 {rows} 行，其中 {superseded} 行被同一候选人后来的行取代。"},
    "report_counted_with": {"en": "Counted with criteria set", "zh": "计数所用标准"},
    "report_diagram": {"en": "CONSORT flow: enrollment", "zh": "CONSORT 流程图：入组"},
    "report_counts": {"en": "Counts", "zh": "计数"},
    "report_box": {"en": "Box", "zh": "类别"},
    "report_count": {"en": "Candidates", "zh": "人数"},
    "report_expected": {"en": "Expected ({title})", "zh": "应为（{title}）"},
    "report_criteria": {"en": "Per criterion (precedence order)", "zh": "各项标准（按优先顺序）"},
    "report_criterion": {"en": "Criterion", "zh": "标准"},
    "report_excluded_first": {"en": "Excluded: first", "zh": "排除：首要"},
    "report_excluded_only": {"en": "only", "zh": "唯一"},
    "report_excluded_any": {"en": "any", "zh": "任一"},
    "report_pending_first": {"en": "Pending: first", "zh": "待定：首个"},
    "report_by": {"en": "By {field}", "zh": "按 {field}"},
    "report_total": {"en": "Total", "zh": "合计"},
    "report_attrition": {"en": "Attrition", "zh": "逐项剔除"},
    "report_step": {"en": "Step", "zh": "步骤"},
    "report_removed": {"en": "Removed", "zh": "剔除"},
    "report_remaining": {"en": "Remaining", "zh": "剩余"},
    "report_remaining_by": {"en": "Remaining after each criterion, by {field}", "zh": "按 {field} 列出每步后剩余人数"},
    "report_pending": {"en": "Pending candidates", "zh": "待定候选人"},
    "report_site": {"en": "Site", "zh": "中心"},
    "report_none_pending": {"en": "No candidate is pending.", "zh": "没有待定的候选人。"},
    "report_question": {"en": "Question", "zh": "问题"},
    "report_field": {"en": "Field", "zh": "字段"},
    "report_made_by": {"en": "Made by nlc-screen {version} from the decision rows alone; every number can be "
                                 "re-derived with nlc-screen audit.",
                       "zh": "由 nlc-screen {version} 仅根据决定行生成；每个数字都可用 nlc-screen audit 重新得出。"},
    # the REDCap instrument
    "redcap_night": {"en": "Night {n} of the diary (D0 + {d}): cramp episodes", "zh": "日记第 {n} 晚（D0 + {d}）：抽筋次数"},
    # the amendment impact report (diff-rules)
    "diff_title": {"en": "Amendment impact — {old} → {new} (trial pack {pack})",
                   "zh": "方案修订的影响 — {old} → {new}（试验包 {pack}）"},
    "diff_read": {"en": "{n} candidate(s) screened again under both sets from {source} ({rows} record(s) read, "
                        "{superseded} superseded by a later record for the same candidate; {errors} could not be read)",
                  "zh": "从 {source} 按两版标准重新筛选 {n} 名候选人（读取 {rows} 条记录，其中 {superseded} 条被同一候选人"
                        "后来的记录取代；{errors} 条无法读取）"},
    "diff_changed": {"en": "Decided differently: {n} candidate(s) (old → new; [the criterion that decided the box])",
                     "zh": "判定不同：{n} 名候选人（旧 → 新；[决定其所在方框的标准]）"},
    "diff_not_in_set": {"en": "(not in {name})", "zh": "（{name} 中无此标准）"},
    "diff_decided_old": {"en": "decided the old box", "zh": "决定旧方框"},
    "diff_decided_new": {"en": "decides the new box", "zh": "决定新方框"},
    "diff_old_decided_by": {"en": "old box decided by {id} {title} (the same status under both sets)",
                            "zh": "旧方框由 {id} {title} 决定（两版标准下状态相同）"},
    "diff_new_decided_by": {"en": "new box decided by {id} {title} (the same status under both sets)",
                            "zh": "新方框由 {id} {title} 决定（两版标准下状态相同）"},
    "diff_other_primary": {"en": "{n} more candidate(s) stayed in their box, now put there by another criterion",
                           "zh": "另有 {n} 名候选人仍在原方框，但改由另一项标准决定"},
    "diff_erased": {"en": "{n} candidate(s) erased from the screening log (`log erase`): not screened again and not in "
                          "the counts below; `audit --log` counts them in their logged boxes, so (when OLD is the set "
                          "they were screened with) its counts are the old counts here plus theirs",
                    "zh": "{n} 名候选人的记录已从筛选日志中删除（`log erase`）：未重新筛选，不计入下面的计数；"
                          "`audit --log` 按其记录的类别计数，因此（当旧标准就是筛选它们时所用的标准时）其计数等于此处旧标准的计数加上这些候选人"},
    "diff_unreadable": {"en": "Records that could not be read ({n}; listed once, not as changes):",
                        "zh": "无法读取的记录（{n} 条；只列一次，不算作变化）："},
    "diff_error_box": {"en": "Could not be read", "zh": "无法读取"},
    "diff_transitions": {"en": "Moves between boxes (old box → new box: candidates)",
                         "zh": "方框间的移动（旧方框 → 新方框：候选人数）"},
    "diff_stayed": {"en": "{n} candidate(s) stayed in their box", "zh": "{n} 名候选人留在原方框"},
    "diff_counts": {"en": "CONSORT counts", "zh": "CONSORT 计数"},
    "diff_adds_up": {"en": "every count's change is the candidates moved in less those moved out; the categories' "
                           "changes add up to the change in candidates assessed",
                     "zh": "每项计数的变化等于移入减移出的候选人数；各类别的变化之和等于接受评估人数的变化"},
    # statuses of a criterion, as the text report shows them
    "met": {"en": "met", "zh": "满足"},
    "not_met": {"en": "not_met", "zh": "不满足"},
    "review": {"en": "review", "zh": "待审"},
    "status_unknown": {"en": "unknown", "zh": "不详"},
    # answer formats of the record's field types
    "format_date": {"en": "a date, YYYY-MM-DD", "zh": "日期，格式 YYYY-MM-DD"},
    "format_bool": {"en": "yes or no (true / false)", "zh": "是或否（true / false）"},
    "format_int": {"en": "a whole number{range}", "zh": "整数{range}"},
    "format_number": {"en": "a number{range}", "zh": "数字{range}"},
    "format_range": {"en": " from {low} to {high}", "zh": "，{low} 至 {high}"},
    "format_enum": {"en": "one of {values}", "zh": "以下之一：{values}"},
    "format_text": {"en": "text", "zh": "文字"},
    "format_list": {"en": "a list, one entry per {item}", "zh": "列表，每项一条{item}"},
    "format_object": {"en": "its fields: {fields}", "zh": "各字段：{fields}"},
    # the web form (GET /) and its worklist page (GET /ui/worklist)
    "form_title": {"en": "Eligibility screening", "zh": "入选资格筛选"},
    "form_language": {"en": "Language", "zh": "语言"},
    "form_decision": {"en": "Decision", "zh": "筛选结论"},
    "form_ask_now": {"en": "Ask next: the questions that can still settle the decision, most decisive first",
                     "zh": "下一步询问：仍可决定结论的问题，最具决定性的在前"},
    "form_other": {"en": "Other fields (greyed: an answer cannot change the decision now)",
                   "zh": "其他字段（灰色：其回答已无法改变结论）"},
    "form_criteria": {"en": "Criteria", "zh": "标准"},
    "form_col_id": {"en": "Criterion", "zh": "标准"},
    "form_col_status": {"en": "Status", "zh": "状态"},
    "form_col_reason": {"en": "Reason", "zh": "理由"},
    "form_save": {"en": "Save: log the decision", "zh": "保存：将决定记入筛选记录"},
    "form_new": {"en": "New candidate", "zh": "新候选人"},
    "form_worklist": {"en": "Worklist", "zh": "待办列表"},
    "form_not_known": {"en": "not known", "zh": "不详"},
    "form_yes": {"en": "yes", "zh": "是"},
    "form_no": {"en": "no", "zh": "否"},
    "form_add": {"en": "Add an entry", "zh": "添加一条"},
    "form_remove": {"en": "Remove", "zh": "删除"},
    "form_list_unknown": {"en": "not known", "zh": "不详"},
    "form_list_listed": {"en": "as listed below (none when empty)", "zh": "如下所列（为空则表示无）"},
    "form_token_title": {"en": "Access token", "zh": "访问令牌"},
    "form_token_help": {"en": "This service needs the access token you were given. It is kept in this browser tab "
                              "only, until the tab is closed.",
                        "zh": "本服务需要您获得的访问令牌。令牌仅保存在此浏览器标签页中，关闭标签页即清除。"},
    "form_token_ok": {"en": "Continue", "zh": "继续"},
    "form_token_bad": {"en": "That token was refused; enter it again.", "zh": "该令牌被拒绝，请重新输入。"},
    "form_saved": {"en": "Saved: the decision is in the screening log.", "zh": "已保存：决定已记入筛选记录。"},
    "form_unreadable": {"en": "The record cannot be screened yet:", "zh": "记录尚无法筛选："},
    "form_start_here": {"en": "Enter the candidate id and the screening start date to begin.",
                        "zh": "请先输入候选人编号和筛选开始日期。"},
    "form_decided": {"en": "Decided: nothing more to ask.", "zh": "已作出决定：无需再问。"},
    "form_review": {"en": "Nothing more to ask: the investigator decides the criteria in review.",
                    "zh": "无需再问：处于审核状态的标准由研究者判断。"},
    "form_resumed": {"en": "The candidate's latest record from the screening log is loaded.",
                     "zh": "已载入该候选人在筛选记录中的最新记录。"},
    "form_no_record": {"en": "The screening log keeps no record for this candidate (erased).",
                       "zh": "筛选记录中没有该候选人的记录（已清除）。"},
    "form_failed": {"en": "The service could not answer:", "zh": "服务无法回应："},
    "form_worklist_title": {"en": "Worklist: pending candidates", "zh": "待办列表：待定候选人"},
    "form_worklist_help": {"en": "Open a candidate to resume its latest record in the form.",
                           "zh": "打开候选人，即可在筛选表中继续其最新记录。"},
    "form_worklist_empty": {"en": "No pending candidate in the screening log.", "zh": "筛选记录中没有待定候选人。"},
    "form_col_site": {"en": "Site", "zh": "研究中心"},
    "form_col_candidate": {"en": "Candidate", "zh": "候选人"},
    "form_col_start": {"en": "Screening start", "zh": "筛选开始"},
    "form_col_open": {"en": "Still to ask", "zh": "尚待询问"},
    "form_open": {"en": "Open", "zh": "打开"},
    "form_back": {"en": "Back to the form", "zh": "返回筛选表"},
    # the guided interview (nlc-screen interview)
    "interview_question": {"en": "Q{n}. {question}\n    {path} — {format}", "zh": "问题 {n}．{question}\n    {path} — {format}"},
    "interview_skip": {"en": " (Enter: not known)", "zh": "（直接回车：不详）"},
    "interview_field": {"en": "{label}?", "zh": "{label}？"},
    "interview_required": {"en": "The record needs this: {format}.", "zh": "记录必须有此项：{format}。"},
    "interview_again": {"en": "Not an answer this question takes: {format}. Please answer again.",
                        "zh": "该回答不符合要求：{format}。请重新回答。"},
    "interview_refused": {"en": "Not accepted ({reason}): {format}. Please answer again.",
                          "zh": "未被接受（{reason}）：{format}。请重新回答。"},
    "interview_decided": {"en": "Decided after {n} question(s).", "zh": "共问 {n} 个问题后作出决定。"},
    "interview_skipped": {"en": "Every open question was skipped ({n} asked): the candidate stays undetermined.",
                          "zh": "所有未决问题均被跳过（已问 {n} 个）：候选人仍无法判定。"},
    "interview_no_more": {"en": "No more answers ({n} question(s) asked): the candidate stays undetermined.",
                          "zh": "没有更多回答（已问 {n} 个问题）：候选人仍无法判定。"},
    "interview_saved": {"en": "Record saved to {path}; resume with: nlc-screen interview --resume {path}",
                        "zh": "记录已保存至 {path}；继续请用：nlc-screen interview --resume {path}"},
    "interview_interrupted": {"en": "Interrupted: the answers so far are saved.", "zh": "已中断：已保存目前的回答。"},
    "interview_logged": {"en": "Decision appended to the screening log {log}.", "zh": "决定已记入筛选记录 {log}。"},
    "interview_unknown": {"en": "Nothing more to ask ({n} question(s) asked): the answers leave the candidate "
                                "undetermined.",
                          "zh": "无需再问（已问 {n} 个问题）：根据这些回答，候选人仍无法判定。"},
    "interview_current": {"en": "    now: {value}", "zh": "    目前：{value}"},
    "interview_list_adds": {"en": " (entries are added to the list; an entry with the same {fields} is updated)",
                            "zh": "（条目将加入列表；{fields} 相同的条目将被更新）"},
    "interview_fix": {"en": "    The record's answer is not accepted ({reason}).",
                      "zh": "    记录中的回答未被接受（{reason}）。"},
    "interview_review": {"en": "Nothing more to ask ({n} question(s) asked): the investigator decides the "
                               "criteria in review.",
                         "zh": "无需再问（已问 {n} 个问题）：处于审核状态的标准由研究者判断。"},
    "interview_unreadable": {"en": "{file}: the record cannot be read (fields: {fields}); answer them again "
                                   "with --resume, or correct the file.",
                             "zh": "{file}：无法读取该记录（字段：{fields}）；请用 --resume 重新回答，或修改文件。"},
}

#: The answers the guided interview takes for yes / no and for an empty list, in any of the
#: languages (an answer is compared lower case; the first of each is the one shown).
ANSWER_WORDS: dict[str, dict[str, tuple[str, ...]]] = {
    "yes": {"en": ("yes", "y", "true", "1"), "zh": ("是", "是的")},
    "no": {"en": ("no", "n", "false", "0"), "zh": ("否", "不", "不是")},
    "none": {"en": ("none", "no", "[]"), "zh": ("无", "没有")},
}


def answer_words(kind: str) -> frozenset[str]:
    """Every word :data:`ANSWER_WORDS` accepts for ``kind`` (yes, no, none), whatever the language."""
    return frozenset(word for words in ANSWER_WORDS[kind].values() for word in words)


def message(key: str, lang: str = DEFAULT_LANG, **values: Any) -> str:
    """The tool's own text ``key`` in ``lang`` (English when it has no translation), filled."""
    texts = MESSAGES[key]
    text = texts.get(lang) or texts[DEFAULT_LANG]
    return text.format(**values) if values else text


def status_word(status: str, lang: str) -> str:
    """A criterion status as the text report shows it (the key itself in English)."""
    return message("status_unknown" if status == "unknown" else status, lang)


def check_lang(lang: str | None) -> str:
    """``lang``, or the environment's default; a language not spoken is a ``ValueError``."""
    chosen = lang or os.environ.get(LANG_ENV) or DEFAULT_LANG
    if chosen not in LANGUAGES:
        raise ValueError(f"language {chosen[:20]!r} is not one of {', '.join(LANGUAGES)}")
    return chosen


def localized(raw: Any, where: str, fail: Callable[[str, str], Exception], *,
              check: Callable[[str, str], str] | None = None) -> dict[str, str]:
    """A pack text: plain text (English only) or ``{en: ..., zh: ...}`` (every language).

    :param check: validates one language's text (``check(text, where)``) and returns it.
    :raises: what ``fail(message, where)`` makes, naming the key."""
    if isinstance(raw, str):
        return {DEFAULT_LANG: check(raw, where) if check else raw}
    if isinstance(raw, dict) and set(raw) == set(LANGUAGES):
        out = {}
        for lang in LANGUAGES:
            text = raw[lang]
            if not isinstance(text, str) or not text.strip():
                raise fail("must be text, not blank", f"{where}.{lang}")
            out[lang] = check(text, f"{where}.{lang}") if check else text
        return out
    raise fail(f"must be text, or {{{', '.join(f'{lang}: <text>' for lang in LANGUAGES)}}}", where)
