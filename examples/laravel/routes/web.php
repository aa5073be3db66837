<?php
// Routes with cookies, session and auth (the 'web' middleware group): they
// show what the Courser bridge resets between two users of one worker.
declare(strict_types=1);

use App\Support\LeakyCache;
use Illuminate\Http\Request;
use Illuminate\Support\Facades\App;
use Illuminate\Support\Facades\Auth;
use Illuminate\Support\Facades\Cookie;
use Illuminate\Support\Facades\Log;
use Illuminate\Support\Facades\Route;
use Illuminate\Support\Facades\View;

// Logs in as alice or bob, stores ?note= in the session and queues a cookie.
Route::get('/login/{user}', static function (Request $request, string $user) {
    if (!Auth::loginUsingId($user)) {
        return response()->json(['error' => "no user $user"], 404);
    }
    session(['note' => (string) $request->query('note', '')]);
    Cookie::queue('flavor', (string) $request->query('flavor', 'plain'), 60);

    return response()->json(['user' => Auth::id()]);
});

// What this client's request carries: user, session note, cookie, and what
// the worker may have kept from an earlier request.
Route::get('/whoami', static function (Request $request) {
    return response()->json([
        'user' => Auth::id(),
        'note' => session('note'),
        'flavor' => $request->cookie('flavor'),
        'queued' => array_keys(Cookie::getQueuedCookies()),
        'locale' => App::getLocale(),
        'app_name' => config('app.name'),
        'shared' => array_keys(array_diff_key(View::getShared(), ['app' => 1, '__env' => 1])),
        'url' => url('/whoami'),
    ]);
});

// State changes a request must not leave behind for the next one.
Route::get('/dirty', static function () {
    App::setLocale('fr');
    config(['app.name' => 'changed by /dirty']);
    View::share('secret', 'from /dirty');
    Cookie::queue('stray', 'from /dirty', 60);
    Log::withContext(['user' => 'from /dirty']);

    return response()->json(['dirty' => true]);
});

Route::get('/private', static fn () => response()->json(['user' => Auth::id()]))->middleware('auth');

Route::get('/welcome/{name}', static fn (string $name) => view('welcome', ['name' => $name]));

// A deliberate leak: the leak detector names LeakyCache::$items.
Route::get('/leak', static function () {
    LeakyCache::$items[] = str_repeat('x', 16 * 1024);

    return response()->json(['items' => count(LeakyCache::$items)]);
});

// exit() in a request: the client gets a 500, the worker is replaced.
Route::get('/exit', static function () {
    exit(3);
});
