"""The tables PII detection works from (``privacy.pii``): value patterns (RE2 syntax for Arrow; the ASCII ones are
also valid Python ``re`` patterns), loose value shapes, and column-name hints in Chinese and English. Kept apart so
the detection logic reads on its own and the tables can be reviewed (and extended) in one place."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

__all__ = ["PiiKind", "PiiRole"]

PiiKind = Literal["resident_id", "residence_permit", "mobile", "bank_card", "uscc", "email", "ip", "plate", "name",
                  "birth_date", "gender", "age", "region", "postcode", "address"]
PiiRole = Literal["direct_identifier", "quasi_identifier"]

# --- patterns (RE2 for Arrow; the ASCII ones are also valid Python `re` patterns for identify) ---------------------
_WS = " \t\r\n\f"  # explicit: RE2's \s and Python's \s disagree on \v
# Full-width forms of the characters identifiers are made of, and the ideographic space (CJK input methods type
# them): values holding one are NFKC-normalized before matching. Other full-width punctuation splits tokens anyway.
_WIDE = ((0xFF05, 0xFF05), (0xFF0B, 0xFF0B), (0xFF0D, 0xFF0E), (0xFF10, 0xFF19), (0xFF20, 0xFF3A), (0xFF3F, 0xFF3F),
         (0xFF41, 0xFF5A), (0x3000, 0x3000))
_SPLIT = r"[^0-9A-Za-z@._%+\-]+"  # scan tokens: anything that cannot be part of an email or a number
_TRIM = "._-"
_SEP = rf"[{_WS}\-]+"
_USCC_CHARS = "[0-9A-HJ-NPQRTUWXY]"
# A value can hold a direct identifier only if it has '@', 11+ digits or 18 USCC characters, gaps allowed (identify's
# shortcut; scan uses a looser byte count, _could_hold).
_PREFILTER = rf"@|\d(?:[{_WS}\-]*\d){{10}}|{_USCC_CHARS}(?:[{_WS}\-]*{_USCC_CHARS}){{17}}"
_DIGIT_GAP = rf"(?<=\d)[{_WS}\-]+(?=\d)"  # Python only (RE2 has no lookaround); _tokens(join=True) in numpy
_EMAIL = (r"^[A-Za-z0-9._%+\-]+@[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?"
          r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,24}$")
_MOBILE = r"^(?:\+?86|0086)?1[3-9]\d{9}$"
_IPV4 = r"^\d{1,3}(?:\.\d{1,3}){3}$"
_IPV6 = r"^[0-9A-Fa-f]*:[0-9A-Fa-f]*:[0-9A-Fa-f:.]*$"
_PROVINCE_ABBR = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"
_PLATE_LETTER = "[A-HJ-NP-Z]"
_PLATE = (rf"^[{_PROVINCE_ABBR}]{_PLATE_LETTER}(?:[A-HJ-NP-Z0-9]{{4}}[A-HJ-NP-Z0-9挂学警港澳]"
          rf"|[DF][A-HJ-NP-Z0-9]\d{{4}}|\d{{5}}[DF])$")
_SURNAMES = ("王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢"
             "姜崔钟谭陆汪范金石廖贾夏韦付傅方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤常温康"
             "施牛樊葛邢安齐易乔伍庞颜倪庄聂章鲁岳翟殷詹申欧耿关兰焦俞左柳甘祝包宁尚符舒阮柯纪梅童凌毕单季裴霍涂成苗谷"
             "盛曲翁冉骆蓝路游辛靳管柴蒙鲍华喻祁蒲房滕屈饶解牟艾尤阳时穆农司卓古吉缪简车项连芦麦褚娄窦戚岑景党宫费卜冷"
             "晏席卫米柏宗瞿桂全佟应臧闵苟邬边卞姬师和仇栾隋商刁沙荣巫寇桑郎甄丛仲虞敖巩明佘池查麻苑迟邝")
_COMPOUND_SURNAMES = "欧阳|司马|诸葛|上官|东方|皇甫|尉迟|公孙|慕容|长孙|宇文|司徒|夏侯|令狐|端木|独孤|南宫|西门"
_NAME = rf"^(?:(?:{_COMPOUND_SURNAMES})\p{{Han}}{{1,2}}|[{_SURNAMES}]\p{{Han}}{{1,3}})$"
_NAME_SHAPE = r"^\p{Han}{2,4}$|^\p{Han}{1,6}·\p{Han}{1,10}$|^[A-Za-z][A-Za-z .'\-]{1,39}$"
_GENDER = ("男", "女", "男性", "女性", "male", "female")
_GENDER_SHAPE = (*_GENDER, "m", "f", "u", "x", "0", "1", "2", "9", "未知", "其他", "unknown", "other")
_AGE = r"^(?P<a>\d{1,3})(?:岁|周岁)?$"
_DATE_SEP = r"^(?P<y>\d{4})[\-/.年](?P<m>\d{1,2})[\-/.月](?P<d>\d{1,2})日?(?:[ T].*)?$"
_DATE_COMPACT = r"^(?P<y>\d{4})(?P<m>\d{2})(?P<d>\d{2})$"
_POSTCODE = r"^[0-8]\d{5}$"
_REGION = r"^\p{Han}{2,12}$|^[A-Za-z][A-Za-z .'\-]{1,39}$"
_ADDRESS = r"(?:省|自治区|市).*?(?:区|县|旗|市|镇|乡).*?(?:路|街|道|巷|弄|胡同|村|号)"
_ADDRESS_SHAPE = r"\p{Han}.*\p{Han}|\d+ [A-Za-z]{2,}"
# Loose shapes: with a name hint, a column is reported when enough values have the kind's shape (validated or not).
_SHAPES: Mapping[PiiKind, str] = {
    "resident_id": r"^\d{15}$|^\d{17}[\dXx]$", "residence_permit": r"^8[123]0000\d{11}[\dXx]$",
    "mobile": r"^\+?\d{7,15}$", "bank_card": r"^\d{12,19}$", "uscc": r"^[0-9A-Za-z]{15,18}$", "email": "@",
    "ip": f"{_IPV4}|{_IPV6}", "plate": rf"^[{_PROVINCE_ABBR}][A-Za-z]", "name": _NAME_SHAPE,
}

# --- column-name hints ------------------------------------------------------------------------------------------
_Phrases = tuple[tuple[str, ...], ...]
_HINTS: Mapping[PiiKind, tuple[tuple[str, ...], _Phrases]] = {
    "resident_id": (("身份证", "证件号", "身份号", "公民身份号码"), (
        ("id", "card"), ("id", "no"), ("id", "number"), ("id", "num"), ("resident", "id"), ("identity", "card"),
        ("identity", "no"), ("identity", "number"), ("national", "id"), ("citizen", "id"), ("sfz",), ("sfzh",))),
    "residence_permit": (("居住证", "港澳台"), (("residence", "permit"), ("permit", "no"), ("permit", "number"))),
    "mobile": (("手机", "电话", "联系方式", "联系号码", "移动号码"), (
        ("mobile",), ("phone",), ("tel",), ("telephone",), ("cellphone",), ("cell",), ("msisdn",),
        ("contact", "number"), ("contact", "phone"))),
    "bank_card": (("银行卡", "卡号", "银行账号", "银行账户", "借记卡", "信用卡"), (
        ("bank", "card"), ("card", "no"), ("card", "number"), ("card", "num"), ("pan",), ("bank", "account"),
        ("account", "no"), ("account", "number"), ("credit", "card"), ("debit", "card"))),
    "uscc": (("信用代码", "营业执照", "纳税人识别号", "税号"), (
        ("uscc",), ("credit", "code"), ("social", "credit"), ("tax", "id"), ("taxpayer", "id"),
        ("business", "license"))),
    "email": (("邮箱", "电子邮件", "电邮", "邮件"), (("email",), ("e", "mail"), ("mail",), ("mailbox",))),
    "ip": ((), (("ip",), ("ipv4",), ("ipv6",), ("ip", "addr"), ("client", "ip"), ("remote", "addr"))),
    "plate": (("车牌", "号牌", "牌照"), (
        ("plate",), ("license", "plate"), ("licence", "plate"), ("vehicle", "no"), ("car", "no"))),
    "name": (("姓名", "名字", "联系人", "持卡人", "户名", "收件人", "收货人", "法定代表人", "负责人"), (
        ("name",), ("full", "name"), ("surname",), ("real", "name"), ("cardholder",), ("holder", "name"),
        ("contact", "person"))),
    "birth_date": (("出生", "生日"), (("birth",), ("birthday",), ("birthdate",), ("dob",), ("born",))),
    "gender": (("性别",), (("gender",), ("sex",))),
    "age": (("年龄", "岁数", "周岁"), (("age",),)),
    "region": (("城市", "省份", "所在省", "所在市", "地区", "区县", "区域", "籍贯", "户籍", "所在地", "地市"), (
        ("city",), ("province",), ("region",), ("district",), ("county",), ("prefecture",), ("hometown",),
        ("native", "place"))),
    "postcode": (("邮编", "邮政编码"), (("zip",), ("zipcode",), ("postcode",), ("post", "code"), ("postal", "code"))),
    "address": (("地址", "住址", "居住地", "住所"), (("address",), ("addr",), ("street",))),
}
# "name" next to these is the name of a thing, not of a person (company_name, 产品名称 ...).
_NOT_PERSON = frozenset((
    "company", "corp", "enterprise", "firm", "org", "organization", "organisation", "product", "goods", "item",
    "sku", "file", "brand", "shop", "store", "merchant", "bank", "city", "province", "district", "county",
    "country", "region", "street", "school", "hospital", "dept", "department", "table", "column", "field",
    "dataset", "host", "domain", "project", "app", "device", "model", "category", "tag", "sheet", "user", "account",
    "nick", "display", "screen", "login", "team", "group", "role", "course", "event", "job", "title", "channel",
    "branch", "site", "server", "service", "type", "key", "index"))
_NOT_PERSON_ZH = ("公司", "企业", "单位", "机构", "产品", "商品", "文件", "品牌", "店", "银行", "学校", "医院", "部门",
                  "项目", "名称")
