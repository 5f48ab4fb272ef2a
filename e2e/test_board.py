"""The task board as a person uses it, in a real Chromium."""

from __future__ import annotations

import re
from datetime import date, timedelta

import pytest
from playwright.sync_api import Page, expect

from conftest import ROOT, running_stack

PASSWORD = "browser-pass-123"


def register(page: Page, stack, username: str, path: str = "/") -> None:
    page.goto(stack.frontend_url + path)
    page.get_by_role("tab", name="新規登録").click()
    page.get_by_label("ユーザー名").fill(username)
    page.get_by_label("パスワード", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="登録してログイン").click()
    expect(page.locator("#current-user")).to_have_text(username)


def stored_session(page: Page) -> dict | None:
    return page.evaluate("JSON.parse(localStorage.getItem('task-manager.session'))")


def api_status(page: Page, stack, method: str, path: str, token: str) -> int:
    """What the API answers this token, asked from the page as the app would."""
    return page.evaluate(
        """async ([url, method, token]) => (await fetch(url,
              {method, headers: {Authorization: 'Bearer ' + token}})).status""",
        [stack.api_url + path, method, token],
    )


def add(page: Page, title: str, *, description: str = "", priority: str | None = None, due: str = "") -> None:
    if description:
        page.get_by_label("説明 (任意)").fill(description)
    if priority:
        page.get_by_label("優先度", exact=True).select_option(priority)
    if due:
        page.get_by_label("期限", exact=True).fill(due)
    page.get_by_label("新しいタスク").fill(title)
    page.get_by_label("新しいタスク").press("Enter")
    # the exact title: "late" must not be taken as added because "later" is on the board
    expect(task(page, title)).to_be_visible()


def task(page: Page, title: str):
    return page.locator(".task", has=page.locator(".title", has_text=re.compile(f"^{re.escape(title)}$")))


def test_register_add_edit_complete_filter_search_delete(page, stack, username):
    register(page, stack, username)
    add(page, "牛乳を買う", description="2本", priority="high")
    add(page, "報告書を書く")
    add(page, "<b>not bold</b>")
    expect(page.locator("#remaining")).to_have_text("残り 3 件")
    # user text is text, never HTML
    expect(task(page, "<b>not bold</b>").locator(".title b")).to_have_count(0)

    # edit in place: Enter saves
    task(page, "報告書を書く").get_by_role("button", name="「報告書を書く」を編集").click()
    page.locator(".edit-title").fill("月次報告書を書く")
    page.locator(".edit-title").press("Enter")
    expect(task(page, "月次報告書を書く")).to_be_visible()

    # Escape cancels an edit
    task(page, "月次報告書を書く").get_by_role("button", name="「月次報告書を書く」を編集").click()
    page.locator(".edit-title").fill("捨てる変更")
    page.locator(".edit-title").press("Escape")
    expect(page.locator(".edit-form")).to_have_count(0)
    expect(task(page, "月次報告書を書く")).to_be_visible()

    # complete with one click, and change status with the selector
    task(page, "牛乳を買う").get_by_role("checkbox").click()
    expect(task(page, "牛乳を買う")).to_have_class(re.compile("completed"))
    task(page, "月次報告書を書く").get_by_label("「月次報告書を書く」の状態").select_option("in_progress")
    expect(task(page, "月次報告書を書く").locator(".status")).to_have_value("in_progress")
    expect(page.locator("#remaining")).to_have_text("残り 2 件")

    # filters
    page.get_by_role("link", name="完了", exact=True).click()
    expect(page).to_have_url(re.compile(r"\?filter=completed"))
    expect(page.locator(".task")).to_have_count(1)
    expect(page.locator(".task .title")).to_have_text(["牛乳を買う"])
    page.get_by_role("link", name="未完了").click()
    expect(page.locator(".task")).to_have_count(2)
    page.get_by_role("link", name="すべて").click()
    expect(page.locator(".task")).to_have_count(3)

    # search
    page.get_by_label("検索").fill("報告")
    expect(page.locator(".task")).to_have_count(1)
    expect(page.locator(".task .title")).to_have_text(["月次報告書を書く"])
    page.get_by_label("検索").fill("")
    expect(page.locator(".task")).to_have_count(3)

    # delete with confirmation: dismissing keeps it, accepting removes it
    page.once("dialog", lambda dialog: dialog.dismiss())
    task(page, "<b>not bold</b>").get_by_role("button", name="「<b>not bold</b>」を削除").click()
    expect(page.locator(".task")).to_have_count(3)
    page.once("dialog", lambda dialog: dialog.accept())
    task(page, "<b>not bold</b>").get_by_role("button", name="「<b>not bold</b>」を削除").click()
    expect(page.locator(".task")).to_have_count(2)

    # clear completed
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="完了したタスクを削除").click()
    expect(page.locator(".task")).to_have_count(1)
    expect(page.locator(".task .title")).to_have_text(["月次報告書を書く"])


def test_sort_and_overdue_marking(page, stack, username):
    register(page, stack, username)
    yesterday = (date.today() - timedelta(days=1)).isoformat()
    later = (date.today() + timedelta(days=5)).isoformat()
    add(page, "later", due=later, priority="low")
    add(page, "late", due=yesterday, priority="high")
    add(page, "someday", priority="medium")
    expect(task(page, "late")).to_have_class(re.compile("overdue"))
    expect(task(page, "late").locator(".overdue-badge")).to_be_visible()
    expect(task(page, "later").locator(".overdue-badge")).to_be_hidden()

    page.get_by_label("並び順").select_option("due_date")
    expect(page.locator(".task .title").first).to_have_text("late")
    expect(page.locator(".task .title")).to_have_text(["late", "later", "someday"])
    page.get_by_label("並び順").select_option("-priority")
    expect(page.locator(".task .title").first).to_have_text("late")
    expect(page.locator(".task .title")).to_have_text(["late", "someday", "later"])
    page.get_by_label("並び順").select_option("created_at")
    expect(page.locator(".task .title").first).to_have_text("later")

    # a completed overdue task is no longer marked overdue
    task(page, "late").get_by_role("checkbox").click()
    expect(task(page, "late")).not_to_have_class(re.compile("overdue"))


def test_typing_the_next_task_while_one_is_saved_keeps_it(page, stack, username):
    register(page, stack, username)
    held = []
    # The first task's real request, held back until the next task is typed: a slow server, as a
    # person meets it. Every other request goes straight through.
    page.route(f"{stack.api_url}/api/tasks",
               lambda route: held.append(route) if route.request.method == "POST" and not held else route.continue_())
    page.get_by_label("優先度", exact=True).select_option("high")
    page.get_by_label("新しいタスク").fill("first")
    page.get_by_label("新しいタスク").press("Enter")
    for _ in range(200):  # the route's handler runs while Playwright waits
        if held:
            break
        page.wait_for_timeout(50)
    assert len(held) == 1, "the first task's request never left the page"
    page.get_by_label("新しいタスク").fill("second, typed while the first is saved")
    page.get_by_label("期限", exact=True).fill("2031-01-02")
    held[0].continue_()

    expect(task(page, "first")).to_be_visible()
    expect(task(page, "first").locator(".priority")).to_have_text("優先度: 高")
    # what was sent is cleared, what was typed since is kept
    expect(page.get_by_label("新しいタスク")).to_have_value("second, typed while the first is saved")
    expect(page.get_by_label("期限", exact=True)).to_have_value("2031-01-02")
    expect(page.get_by_label("優先度", exact=True)).to_have_value("medium")
    page.get_by_label("新しいタスク").press("Enter")
    expect(task(page, "second, typed while the first is saved")).to_be_visible()
    expect(page.locator("#remaining")).to_have_text("残り 2 件")
    expect(page.get_by_label("新しいタスク")).to_have_value("")


def test_reload_keeps_session_and_filter_then_sign_out(page, stack, username):
    register(page, stack, username)
    add(page, "open task")
    add(page, "done task")
    task(page, "done task").get_by_role("checkbox").click()
    page.get_by_role("link", name="未完了").click()
    expect(page.locator(".task")).to_have_count(1)
    page.get_by_label("検索").fill("open")
    expect(page).to_have_url(re.compile(r"q=open"))

    page.reload()
    expect(page.locator("#current-user")).to_have_text(username)
    expect(page.get_by_role("link", name="未完了")).to_have_attribute("aria-current", "page")
    expect(page.get_by_label("検索")).to_have_value("open")
    expect(page.locator(".task")).to_have_count(1)
    expect(page.locator(".task .title")).to_have_text(["open task"])

    session = stored_session(page)
    assert session
    page.get_by_role("button", name="ログアウト", exact=True).click()
    expect(page.get_by_role("button", name="ログイン", exact=True)).to_be_visible()
    expect(page.locator("#auth-error")).to_have_text("ログアウトしました")
    assert stored_session(page) is None
    # both tokens were revoked on the server, not only forgotten here
    assert api_status(page, stack, "GET", "/api/auth/me", session["access"]) == 401
    assert api_status(page, stack, "POST", "/api/auth/refresh", session["refresh"]) == 401
    page.reload()
    expect(page.get_by_role("button", name="ログイン", exact=True)).to_be_visible()


def test_wrong_password_and_api_errors_are_shown(page, stack, username):
    register(page, stack, username)
    page.get_by_role("button", name="ログアウト", exact=True).click()
    page.get_by_label("ユーザー名").fill(username)
    page.get_by_label("パスワード", exact=True).fill("wrong-password")
    page.get_by_role("button", name="ログイン", exact=True).click()
    expect(page.locator("#auth-error")).to_have_text("ユーザー名またはパスワードが正しくありません")

    page.get_by_role("tab", name="新規登録").click()
    page.get_by_label("ユーザー名").fill(username)
    page.get_by_label("パスワード", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="登録してログイン").click()
    expect(page.locator("#auth-error")).to_have_text("このユーザー名は既に使われています")

    page.get_by_role("tab", name="ログイン").click()
    page.get_by_label("パスワード", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="ログイン", exact=True).click()
    expect(page.locator("#current-user")).to_have_text(username)
    # an error from the API (a title over 200 characters slips past no check here) is shown
    page.evaluate("document.querySelector('#new-title').removeAttribute('maxlength')")
    page.get_by_label("新しいタスク").fill("x" * 201)
    page.get_by_label("新しいタスク").press("Enter")
    expect(page.locator("#board-error")).to_have_text("title: 1〜200文字で入力してください")


def test_throttling_says_when_to_try_again(page, stack, username):
    register(page, stack, username)
    page.get_by_role("button", name="ログアウト", exact=True).click()
    for _ in range(5):  # the free failures (LOGIN_FREE_FAILURES_PER_ACCOUNT)
        page.get_by_label("ユーザー名").fill(username)
        page.get_by_label("パスワード", exact=True).fill("wrong-password")
        page.get_by_role("button", name="ログイン", exact=True).click()
        expect(page.locator("#auth-error")).to_have_text("ユーザー名またはパスワードが正しくありません")
        page.locator("#auth-error").evaluate("el => el.textContent = ''")
    page.get_by_label("パスワード", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="ログイン", exact=True).click()
    message = re.compile(r"ログイン試行が多すぎます。(\d+)秒後に再試行してください")
    expect(page.locator("#auth-error")).to_have_text(message)
    wait = int(message.search(page.locator("#auth-error").text_content()).group(1))
    assert 1 <= wait <= 2  # a short wait that grows with more failures, not a 15-minute lock
    page.wait_for_timeout(wait * 1000 + 300)
    page.get_by_role("button", name="ログイン", exact=True).click()
    expect(page.locator("#current-user")).to_have_text(username)


def test_keyboard_only(page, stack, username):
    page.goto(stack.frontend_url)
    expect(page.get_by_label("ユーザー名")).to_be_focused()  # the form takes focus on load
    page.keyboard.press("Shift+Tab")
    expect(page.get_by_role("tab", name="新規登録")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_role("tab", name="新規登録")).to_have_attribute("aria-selected", "true")
    page.keyboard.press("Tab")
    page.keyboard.type(username)
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    expect(page.locator("#current-user")).to_have_text(username)
    expect(page.get_by_label("新しいタスク")).to_be_focused()
    page.keyboard.type("typed task")
    page.keyboard.press("Enter")
    expect(task(page, "typed task")).to_be_visible()
    expect(page.get_by_label("新しいタスク")).to_be_focused()


def test_every_control_has_a_label(page, stack, username):
    register(page, stack, username)
    add(page, "labelled")
    task(page, "labelled").get_by_role("button", name="「labelled」を編集").click()
    unlabelled = page.evaluate(
        """() => [...document.querySelectorAll('input, select, textarea, button')]
            .filter(el => el.offsetParent !== null)
            .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                          && !(el.textContent || '').trim())
            .map(el => el.outerHTML)"""
    )
    assert unlabelled == []


def test_phone_sized_screen_has_no_horizontal_scroll(browser, stack, username):
    context = browser.new_context(viewport={"width": 375, "height": 740}, locale="ja-JP")
    page = context.new_page()
    register(page, stack, username)
    add(page, "とても長いタスク名" * 8, description="説明" * 40, due="2030-01-01")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    context.close()


SHORT_ACCESS = {"TASK_MANAGER_JWT_ACCESS_TOKEN_MINUTES": "0.03"}  # about 2 s


@pytest.fixture(scope="module")
def short_stack(tmp_path_factory):
    with running_stack(tmp_path_factory.mktemp("short"), **SHORT_ACCESS) as stack:
        yield stack


def test_expired_access_token_is_refreshed_silently_and_rotates_the_refresh_token(browser, short_stack, username):
    stack = short_stack
    context = browser.new_context(locale="ja-JP")
    page = context.new_page()
    refreshes = []
    page.on("request", lambda r: refreshes.append(r.url) if r.url.endswith("/api/auth/refresh") else None)
    register(page, stack, username)
    first = stored_session(page)
    add(page, "before expiry")
    page.wait_for_timeout(2500)
    add(page, "after expiry")
    expect(page.locator("#board-error")).to_have_text("")
    assert len(refreshes) == 1
    rotated = stored_session(page)
    assert rotated["refresh"] != first["refresh"]  # the new refresh token was kept
    page.reload()
    page.wait_for_timeout(2500)
    add(page, "after reload and expiry")
    expect(page.locator("#current-user")).to_have_text(username)
    expect(page.locator("#board-error")).to_have_text("")
    assert len(refreshes) == 2
    # Someone replays the first, spent refresh token: the server takes it for a stolen
    # copy and ends the sign-in, so this browser is signed out at its next request.
    assert api_status(page, stack, "POST", "/api/auth/refresh", first["refresh"]) == 401
    page.get_by_label("新しいタスク").fill("after the replay")
    page.get_by_label("新しいタスク").press("Enter")
    expect(page.locator("#auth-error")).to_have_text("セッションの有効期限が切れました。もう一度ログインしてください")
    context.close()


def test_sign_out_with_an_expired_access_token_revokes_the_refresh_token(browser, short_stack, username):
    stack = short_stack
    context = browser.new_context(locale="ja-JP")
    page = context.new_page()
    register(page, stack, username)
    add(page, "a task")
    session = stored_session(page)
    page.wait_for_timeout(2500)  # the access token has expired now
    assert api_status(page, stack, "GET", "/api/auth/me", session["access"]) == 401
    sent = []
    page.on("request", lambda r: sent.append(r.url.removeprefix(stack.api_url)))
    page.get_by_role("button", name="ログアウト", exact=True).click()
    expect(page.locator("#auth-error")).to_have_text("ログアウトしました")
    assert sent == ["/api/auth/logout"]  # no refresh first: the refresh token alone signs out
    # The refresh token no longer works on the server: the session really ended.
    assert api_status(page, stack, "POST", "/api/auth/refresh", session["refresh"]) == 401
    context.close()


def test_tabs_share_a_refreshed_session(browser, short_stack, username):
    stack = short_stack
    context = browser.new_context(locale="ja-JP")
    first = context.new_page()
    register(first, stack, username)
    second = context.new_page()
    second.goto(stack.frontend_url)
    expect(second.locator("#current-user")).to_have_text(username)
    first.wait_for_timeout(2500)
    add(first, "from the first tab")  # refreshes: the second tab's refresh token is spent now
    add(second, "from the second tab")  # must take over the first tab's tokens, not replay its own
    expect(second.locator("#board-error")).to_have_text("")
    first.reload()
    expect(first.locator(".task .title")).to_have_text(["from the second tab", "from the first tab"])
    context.close()


def test_sign_out_everywhere(browser, stack, username):
    laptop = browser.new_context(locale="ja-JP").new_page()
    register(laptop, stack, username)
    phone = browser.new_context(locale="ja-JP").new_page()
    phone.goto(stack.frontend_url)
    phone.get_by_label("ユーザー名").fill(username)
    phone.get_by_label("パスワード", exact=True).fill(PASSWORD)
    phone.get_by_role("button", name="ログイン", exact=True).click()
    expect(phone.locator("#current-user")).to_have_text(username)
    phone_session = stored_session(phone)

    laptop.once("dialog", lambda dialog: dialog.accept())
    laptop.get_by_role("button", name="すべての端末からログアウト").click()
    expect(laptop.locator("#auth-error")).to_have_text("すべての端末からログアウトしました")
    assert stored_session(laptop) is None
    # The phone's tokens are dead on the server, and the phone finds out at its next request.
    assert api_status(phone, stack, "POST", "/api/auth/refresh", phone_session["refresh"]) == 401
    phone.get_by_label("新しいタスク").fill("too late")
    phone.get_by_label("新しいタスク").press("Enter")
    expect(phone.locator("#auth-error")).to_have_text("セッションの有効期限が切れました。もう一度ログインしてください")
    laptop.context.close()
    phone.context.close()


def test_change_password(browser, stack, username):
    page = browser.new_context(locale="ja-JP").new_page()
    register(page, stack, username)
    other = browser.new_context(locale="ja-JP").new_page()
    other.goto(stack.frontend_url)
    other.get_by_label("ユーザー名").fill(username)
    other.get_by_label("パスワード", exact=True).fill(PASSWORD)
    other.get_by_role("button", name="ログイン", exact=True).click()
    expect(other.locator("#current-user")).to_have_text(username)

    page.get_by_role("button", name="パスワード変更").click()
    page.get_by_label("現在のパスワード").fill("not-my-password")
    page.get_by_label("新しいパスワード").fill("a brand new secret")
    page.get_by_role("button", name="変更する").click()
    expect(page.locator("#password-error")).to_have_text("現在のパスワードが正しくありません")
    page.get_by_label("現在のパスワード").fill(PASSWORD)
    page.get_by_label("新しいパスワード").fill("password1234")
    page.get_by_role("button", name="変更する").click()
    expect(page.locator("#password-error")).to_contain_text("new_password:")
    page.get_by_label("新しいパスワード").fill("a brand new secret")
    page.get_by_role("button", name="変更する").click()
    expect(page.locator("#board-notice")).to_have_text("パスワードを変更しました。ほかの端末はログアウトされました")
    expect(page.locator("#password-form")).to_be_hidden()
    add(page, "still signed in here")

    other.get_by_label("新しいタスク").fill("signed out there")
    other.get_by_label("新しいタスク").press("Enter")
    expect(other.locator("#auth-error")).to_have_text("セッションの有効期限が切れました。もう一度ログインしてください")
    other.get_by_label("ユーザー名").fill(username)
    other.get_by_label("パスワード", exact=True).fill("a brand new secret")
    other.get_by_role("button", name="ログイン", exact=True).click()
    expect(other.locator("#current-user")).to_have_text(username)
    page.context.close()
    other.context.close()


def test_api_down_is_shown_and_recovers(browser, tmp_path, username):
    with running_stack(tmp_path) as stack:
        context = browser.new_context(locale="ja-JP")
        page = context.new_page()
        register(page, stack, username)
        add(page, "survives the outage")
        stack.stop_api()
        page.get_by_label("新しいタスク").fill("while down")
        page.get_by_label("新しいタスク").press("Enter")
        expect(page.locator("#offline")).to_be_visible()
        expect(page.locator("#offline")).to_contain_text("サーバーに接続できません")
        stack.start_api()  # the same database, a new API process on the same port
        expect(page.locator("#offline")).to_be_hidden(timeout=15_000)
        expect(task(page, "survives the outage")).to_be_visible()
        context.close()


@pytest.mark.screenshot
def test_screenshot_of_the_board(browser, stack):
    context = browser.new_context(viewport={"width": 1000, "height": 760}, locale="ja-JP", device_scale_factor=1)
    page = context.new_page()
    register(page, stack, "yamada_taro")
    soon = (date.today() + timedelta(days=3)).isoformat()
    past = (date.today() - timedelta(days=2)).isoformat()
    add(page, "週次バックアップの結果を確認する", priority="high", due=soon, description="backup.yml のレポートを見る")
    add(page, "ログローテーションの設定を見直す", priority="medium")
    add(page, "SSL 証明書を更新する", priority="high", due=past)
    add(page, "運用マニュアルを読む", priority="low")
    task(page, "運用マニュアルを読む").get_by_role("checkbox").click()
    task(page, "ログローテーションの設定を見直す").locator(".status").select_option("in_progress")
    expect(page.locator("#remaining")).to_have_text("残り 3 件")
    target = ROOT / "docs" / "screenshots" / "board.png"
    target.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(target), full_page=True)
    assert target.stat().st_size > 10_000
    context.close()


@pytest.fixture(scope="module")
def sprayed_stack(tmp_path_factory):
    # Few free failures per address, so that a handful of tries stands for an office's worth.
    with running_stack(tmp_path_factory.mktemp("sprayed"), TASK_MANAGER_LOGIN_FREE_FAILURES_PER_CLIENT="3",
                       TASK_MANAGER_LOGIN_BACKOFF_BASE_SECONDS="600") as stack:
        yield stack


def test_a_browser_that_signed_in_before_is_not_held_up_by_others_guessing_from_its_address(
        browser, sprayed_stack, username):
    stack = sprayed_stack
    context = browser.new_context(locale="ja-JP")
    page = context.new_page()
    register(page, stack, username)
    assert page.evaluate("JSON.parse(localStorage.getItem('task-manager.devices'))")[username]
    page.get_by_role("button", name="ログアウト", exact=True).click()
    # Someone else behind the same address (every client here is 127.0.0.1) guesses names.
    for n in range(4):
        page.evaluate("""async ([url, name]) => (await fetch(url, {method: 'POST',
              headers: {'Content-Type': 'application/json'},
              body: JSON.stringify({username: name, password: 'whatever-password'})})).status""",
                      [stack.api_url + "/api/auth/login", f"{username}-nobody{n}"])
    page.get_by_label("ユーザー名").fill(username)
    page.get_by_label("パスワード", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="ログイン", exact=True).click()
    expect(page.locator("#current-user")).to_have_text(username)
    # A browser that never signed in here waits, and is told for how long.
    stranger = browser.new_context(locale="ja-JP").new_page()
    stranger.goto(stack.frontend_url + "/")
    stranger.get_by_label("ユーザー名").fill(username)
    stranger.get_by_label("パスワード", exact=True).fill(PASSWORD)
    stranger.get_by_role("button", name="ログイン", exact=True).click()
    expect(stranger.locator("#auth-error")).to_contain_text("秒後に再試行してください")
    stranger.context.close()
    context.close()
