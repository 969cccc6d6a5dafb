"""Names of well-known Microsoft Entra built-in roles, by role definition (template) id.

GDAP relationships and access assignments carry only the ids; partners know the names. Ids from the
Entra "built-in roles" reference; Japanese names as the Japanese Entra admin center shows them.
Unknown ids (custom or newer roles) are shown as the id itself.
"""

from __future__ import annotations

# id: (English, Japanese)
ROLE_NAMES: dict[str, tuple[str, str]] = {
    "62e90394-69f5-4237-9190-012177145e10": ("Global Administrator", "グローバル管理者"),
    "729827e3-9c14-49f7-bb1b-9608f156bbb8": ("Helpdesk Administrator", "ヘルプデスク管理者"),
    "29232cdf-9323-42fd-ade2-1d097af3e4de": ("Exchange Administrator", "Exchange 管理者"),
    "3a2c62db-5318-420d-8d74-23affee5d9d5": ("Intune Administrator", "Intune 管理者"),
    "f2ef992c-3afb-46b9-b7cf-a126ee74c451": ("Global Reader", "グローバル閲覧者"),
    "5d6b6bb7-de71-4623-b4af-96380a352509": ("Security Reader", "セキュリティ閲覧者"),
    "fe930be7-5e62-47db-91af-98c3a49a38b1": ("User Administrator", "ユーザー管理者"),
    "f28a1f50-f6e7-4571-818b-6a12f2af6b6c": ("SharePoint Administrator", "SharePoint 管理者"),
    "69091246-20e8-4a56-aa4d-066075b2a7a8": ("Teams Administrator", "Teams 管理者"),
    "4d6ac14f-3453-41d0-bef9-a3e0c569773a": ("License Administrator", "ライセンス管理者"),
    "194ae4cb-b126-40b2-bd5b-6091b380977d": ("Security Administrator", "セキュリティ管理者"),
    "5f2222b1-57c3-48ba-8ad5-d4759f1fde6f": ("Security Operator", "セキュリティ オペレーター"),
    "b0f54661-2d74-4c50-afa3-1ec803f12efe": ("Billing Administrator", "課金管理者"),
    "9b895d92-2cd3-44c7-9d02-a6ac2d5ea5c3": ("Application Administrator", "アプリケーション管理者"),
    "158c047a-c907-4556-b7ef-446551a6b5f7": (
        "Cloud Application Administrator",
        "クラウド アプリケーション管理者",
    ),
    "7698a772-787b-4ac8-901f-60d6b08affd2": ("Cloud Device Administrator", "クラウド デバイス管理者"),
    "e8611ab8-c189-46e8-94e1-60213ab1f814": ("Privileged Role Administrator", "特権ロール管理者"),
    "7be44c8a-adaf-4e2a-84d6-ab2649e08a13": ("Privileged Authentication Administrator", "特権認証管理者"),
    "c4e39bd9-1100-46d3-8c65-fb160da0071f": ("Authentication Administrator", "認証管理者"),
    "966707d0-3269-4727-9be2-8c3a10f19b9d": ("Password Administrator", "パスワード管理者"),
    "fdd7a751-b60b-444a-984c-02652fe8fa1c": ("Groups Administrator", "グループ管理者"),
    "f023fd81-a637-4b56-95fd-791ac0226033": ("Service Support Administrator", "サービス サポート管理者"),
    "17315797-102d-40b4-93e0-432062caca18": ("Compliance Administrator", "コンプライアンス管理者"),
    "e6d1a23a-da11-4be4-9570-befc86d067a7": (
        "Compliance Data Administrator",
        "コンプライアンス データ管理者",
    ),
    "b1be1c3e-b65d-4f19-8427-f6fa0d97feb9": ("Conditional Access Administrator", "条件付きアクセス管理者"),
    "88d8e3e3-8f55-4a1e-953a-9b9898b8876b": ("Directory Readers", "ディレクトリ閲覧者"),
    "9360feb5-f418-4baa-8175-e2a00bac4301": ("Directory Writers", "ディレクトリ書き込み者"),
    "8329153b-31d0-4727-b945-745eb3bc5f31": ("Domain Name Administrator", "ドメイン名管理者"),
    "8ac3fc64-6eca-42ea-9e69-59f4c7b60eb2": ("Hybrid Identity Administrator", "ハイブリッド ID 管理者"),
    "4a5d8f65-41da-4de4-8968-e035b65339cf": ("Reports Reader", "レポート閲覧者"),
    "790c1fb9-7f7d-4f88-86a1-ef1f95c05c1b": ("Message Center Reader", "メッセージ センター閲覧者"),
    "2b745bdf-0803-4d80-aa65-822c4493daac": ("Office Apps Administrator", "Office アプリ管理者"),
    "11648597-926c-4cf3-9c36-bcebb0ba8dcc": ("Power Platform Administrator", "Power Platform 管理者"),
    "44367163-eba1-44c3-98af-f5787879f96a": ("Dynamics 365 Administrator", "Dynamics 365 管理者"),
    "a9ea8996-122f-4c74-9520-8edcd192826c": ("Fabric Administrator", "Fabric 管理者"),
    "11451d60-acb2-45eb-a7d6-43d0f0125c13": ("Windows 365 Administrator", "Windows 365 管理者"),
    "75941009-915a-4869-abe7-691bff18279e": ("Skype for Business Administrator", "Skype for Business 管理者"),
    "baf37b3a-610e-45da-9e62-d9d1e5e8914b": ("Teams Communications Administrator", "Teams 通信管理者"),
    "3d762c5a-1b6c-493f-843e-55a3b42923d4": ("Teams Devices Administrator", "Teams デバイス管理者"),
    "31392ffb-586c-42d1-9346-e59415a2cc4e": ("Exchange Recipient Administrator", "Exchange 受信者管理者"),
    "9f06204d-73c1-4d4c-880a-6edb90606fd8": (
        "Microsoft Entra Joined Device Local Administrator",
        "Microsoft Entra 参加済みデバイスのローカル管理者",
    ),
    "892c5842-a9a6-463a-8041-72aa08ca3cf6": ("Cloud App Security Administrator", "Cloud App Security 管理者"),
    "7495fdc4-34c4-4d15-a289-98788ce399fd": (
        "Azure Information Protection Administrator",
        "Azure Information Protection 管理者",
    ),
    "e3973bdf-4987-49ae-837a-ba8e231c7286": ("Azure DevOps Administrator", "Azure DevOps 管理者"),
    "0526716b-113d-4c15-b2c8-68e3c22b9f80": ("Authentication Policy Administrator", "認証ポリシー管理者"),
    "45d8d3c5-c802-45c6-b32a-1d70b5e1e86e": ("Identity Governance Administrator", "ID ガバナンス管理者"),
    "d2562ede-74db-457e-a7b6-544e236ebb61": ("AI Administrator", "AI 管理者"),
    "4ba39ca4-527c-499a-b93d-d9b492c50246": ("Partner Tier1 Support", "パートナー レベル 1 サポート"),
    "e00e864a-17c5-4a4b-9c06-f5b95a8d5bd8": ("Partner Tier2 Support", "パートナー レベル 2 サポート"),
}


def role_name(role_id: str, language: str = "en") -> str:
    """A role definition id's name in ``language`` (en, ja), or the id itself when it is not a well-known
    role. The one catalogue: mail and portal both read it."""
    names = ROLE_NAMES.get(role_id.lower())
    if not names:
        return role_id
    return names[1] if language == "ja" else names[0]


def role_catalog() -> dict[str, dict[str, str]]:
    """Every known role as ``{id: {"en": name, "ja": name}}`` (the portal localises with it)."""
    return {role_id: {"en": en, "ja": ja} for role_id, (en, ja) in ROLE_NAMES.items()}
